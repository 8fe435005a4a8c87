/**
 * gRPC server reflection (grpc.reflection.v1 and v1alpha), so that tools such as grpcurl can list
 * and call the admin API without a copy of the protos. It serves the descriptors of proto/,
 * loaded at start-up from the package's own proto/ directory (docs/API.md#reflection).
 */
import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as protoLoader from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { protoPath as healthProtoPath } from 'grpc-health-check';
import { ConfigError } from '../errors.js';
import { servicesOf, type ServiceEntry } from './health-service.js';

const MARKER = join('proto', 'tidemark', 'v1', 'admin.proto');

/**
 * The proto/ directory of the installed package: the nearest ancestor of `from` holding
 * proto/tidemark/v1/admin.proto. The same walk finds it from the sources (services/core/grpc),
 * from the build (dist/services/core/grpc) and in the image (/app/dist/... next to /app/proto).
 */
export function findProtoDir(from: string = fileURLToPath(import.meta.url)): string {
  for (let dir = dirname(from); ; dir = dirname(dir)) {
    if (existsSync(join(dir, MARKER))) return join(dir, 'proto');
    if (dirname(dir) === dir) break;
  }
  throw new ConfigError(
    `the protocol definitions (${MARKER}) are not in any directory above ${from}: server reflection is off. ` +
      'Install the package with its proto/ directory (in an image: COPY proto ./proto next to dist)',
  );
}

/**
 * Reflection over the given files of proto/ (e.g. `tidemark/v1/admin.proto`) and the health
 * service, offering `services` (full names) and health. Imports are resolved too; protobufjs
 * merges a package's files into one descriptor (`tidemark_v1.proto`), which grpcurl reads alike.
 */
export function reflectionServices(files: readonly string[], services: readonly string[], protoDir: string = findProtoDir()): ServiceEntry[] {
  const definition = protoLoader.loadSync([...files, 'health/v1/health.proto'], {
    includeDirs: [protoDir, dirname(dirname(dirname(healthProtoPath)))],
    keepCase: true,
  });
  // Only what this server serves: admin.proto imports worker.proto, whose WorkerService it does not.
  const reflection = new ReflectionService(definition, { services: [...services, 'grpc.health.v1.Health'] });
  return servicesOf((server) => reflection.addToServer(server as never));
}
