/**
 * Who may do what on the admin API (docs/SECURITY.md#who-may-do-what): every call is identified
 * (a bearer token in the `authorization` metadata, else a client certificate mapped to a role),
 * then checked against the role its RPC needs in ADMIN_RPC_ROLES, before the handler runs. An RPC
 * without an entry there is refused at start-up: a new RPC cannot slip through unguarded.
 */
import type * as grpc from '@grpc/grpc-js';
import {
  ConfigError,
  isRole,
  type Logger,
  PermissionDeniedError,
  type Role,
  roleAllows,
  ROLES,
  type TokenTable,
  toServiceError,
  UnauthenticatedError,
} from '../core/index.js';
import type { CoordinatorServiceService } from '../gen/tidemark/v1/admin.js';

/** Who called, as far as authorization cares. */
export interface AdminCaller {
  /** The token's or certificate's configured name: what logs and errors show. */
  name: string;
  role: Role;
  via: 'token' | 'certificate' | 'auth disabled';
}

/** What identification reads of a call: its metadata, its peer, its TLS peer certificate. */
export type AdminCall = Pick<grpc.ServerUnaryCall<unknown, unknown>, 'metadata' | 'getPeer' | 'getAuthContext'>;

/** The identity a client certificate proves (e.g. its subject CN), or undefined without one. */
export type CertificateIdentity = (call: AdminCall) => string | undefined;

/** The default CertificateIdentity: the verified peer certificate's subject common name. */
export const certificateCommonName: CertificateIdentity = (call) => {
  const certificate = call.getAuthContext?.().sslPeerCertificate;
  const cn = certificate?.subject?.CN;
  return typeof cn === 'string' && cn !== '' ? cn : undefined;
};

/** Parses `identity=role,identity=role` (TIDEMARK_AUTH_CERT_ROLES). */
export function parseCertRoles(text: string): Map<string, Role> {
  const roles = new Map<string, Role>();
  for (const item of text.split(',').map((s) => s.trim()).filter((s) => s !== '')) {
    const at = item.lastIndexOf('=');
    const identity = item.slice(0, at).trim();
    const role = item.slice(at + 1).trim();
    if (at <= 0 || !isRole(role)) {
      throw new ConfigError(`authCertRoles (TIDEMARK_AUTH_CERT_ROLES): "${item}" must be <certificate CN>=<role>, the role one of ${ROLES.join(', ')}; nothing was started`);
    }
    roles.set(identity, role);
  }
  return roles;
}

export interface AdminAuthOptions {
  tokens: TokenTable;
  /** Certificate identity → role. @default none */
  certRoles?: ReadonlyMap<string, Role>;
  /** How a call's certificate identity is found. @default certificateCommonName */
  certificateIdentity?: CertificateIdentity;
  /** Development only: every caller is an admin. @default false */
  disabled?: boolean;
}

const BEARER = /^bearer\s+(\S+)\s*$/i;

/** Identifies admin API callers; see the module comment. */
export class AdminAuthenticator {
  private readonly certRoles: ReadonlyMap<string, Role>;
  private readonly certificateIdentity: CertificateIdentity;

  constructor(private readonly options: AdminAuthOptions) {
    this.certRoles = options.certRoles ?? new Map();
    this.certificateIdentity = options.certificateIdentity ?? certificateCommonName;
    const configured = options.tokens.size > 0 || this.certRoles.size > 0;
    if (options.disabled && configured) {
      throw new ConfigError(
        'TIDEMARK_AUTH_DISABLED=true contradicts the callers configured in TIDEMARK_AUTH_TOKENS_FILE / TIDEMARK_AUTH_TOKENS / TIDEMARK_AUTH_CERT_ROLES: ' +
          'unset one of them; nothing was started',
      );
    }
    if (!options.disabled && !configured) {
      throw new ConfigError(
        'the admin API has no callers configured: set TIDEMARK_AUTH_TOKENS_FILE (lines "<role> <name> <sha256 of token>") or TIDEMARK_AUTH_CERT_ROLES, ' +
          'or, for development only, TIDEMARK_AUTH_DISABLED=true; nothing was started (docs/SECURITY.md#who-may-do-what)',
      );
    }
  }

  get disabled(): boolean {
    return this.options.disabled === true;
  }

  /** The caller of `call`; UnauthenticatedError when it cannot be identified. Never echoes a token. */
  identify(call: AdminCall): AdminCaller {
    if (this.options.disabled) return { name: 'anyone', role: 'admin', via: 'auth disabled' };
    const headers = call.metadata.get('authorization');
    if (headers.length > 1) throw new UnauthenticatedError('the call carries more than one authorization header; send one "authorization: Bearer <token>"; nothing was done');
    if (headers.length === 1) return this.identifyBearer(String(headers[0]), 'metadata', 'check TIDEMARK_TOKEN or TIDEMARK_TOKEN_FILE');
    const identity = this.certificateIdentity(call);
    if (identity !== undefined) {
      const role = this.certRoles.get(identity);
      if (!role) throw new UnauthenticatedError(`the client certificate ${JSON.stringify(identity)} has no role: map it in TIDEMARK_AUTH_CERT_ROLES, or send a token; nothing was done`);
      return { name: identity, role, via: 'certificate' };
    }
    throw new UnauthenticatedError('no credentials: the admin API needs a token (set TIDEMARK_TOKEN or TIDEMARK_TOKEN_FILE) or a client certificate with a role; nothing was done');
  }

  /**
   * The caller of an `authorization: Bearer <token>` value (the admin API's metadata, the status
   * page's HTTP header); UnauthenticatedError for a missing, malformed or unknown token. `what`
   * names the carrier in errors, `fix` says what to check. Never echoes a token.
   */
  identifyBearer(authorization: string | undefined, what = 'header', fix = 'check the token'): AdminCaller {
    if (this.options.disabled) return { name: 'anyone', role: 'admin', via: 'auth disabled' };
    if (authorization === undefined) throw new UnauthenticatedError(`no credentials: send an "authorization: Bearer <token>" ${what}; nothing was done`);
    const token = BEARER.exec(authorization)?.[1];
    if (!token) throw new UnauthenticatedError(`the authorization ${what} must be "Bearer <token>"; nothing was done`);
    const entry = this.options.tokens.match(token);
    if (!entry) throw new UnauthenticatedError(`the bearer token is not one this coordinator knows (TIDEMARK_AUTH_TOKENS_FILE); ${fix}; nothing was done`);
    return { name: entry.name, role: entry.role, via: 'token' };
  }
}

/** What a call needs: the role, and how to name this form of the call in an error. */
export interface Need {
  role: Role;
  what: string;
}

type AdminRpc = keyof typeof CoordinatorServiceService;
type RequestOf<K extends AdminRpc> = ReturnType<(typeof CoordinatorServiceService)[K]['requestDeserialize']>;

/** A restore's need: raw broker URLs and appending into live queues are the admin's; dry runs that stay on known brokers are harmless. */
function restoreNeed(request: RequestOf<'restore'>): Need {
  if (request.targetAmqpUrl) return { role: 'admin', what: 'restoring into a raw broker URL (--target-amqp)' };
  const append = request.append || request.mode === 'append';
  if (request.dryRun) return { role: 'read', what: 'a restore dry run' };
  if (append) return { role: 'admin', what: 'appending into existing queues (--mode append)' };
  return { role: 'operator', what: request.target ? `restoring into the configured target ${request.target}` : 'restoring into the source broker' };
}

/**
 * The role every admin RPC needs, in one table (docs/SECURITY.md has it as a table for people).
 * The type makes a missing RPC a compile error; a unit test holds it to the service definition.
 */
export const ADMIN_RPC_ROLES: { [K in AdminRpc]: Role | ((request: RequestOf<K>) => Need) } = {
  status: 'read',
  listCheckpoints: 'read',
  getCheckpoint: 'read',
  verify: 'read',
  listRestores: 'read',
  checkpoint: 'operator',
  restore: restoreNeed,
  // Resuming publishes again; a restore into a raw URL or in append mode also needs admin, checked
  // against its stored record (RestoreService.resume).
  resumeRestore: (request) =>
    request.targetAmqpUrl ? { role: 'admin', what: 'resuming with a raw broker URL (--target-amqp)' } : { role: 'operator', what: 'resuming a restore' },
  cancelRestore: 'operator',
  // A drill restores into a scratch vhost of the source broker, then removes it.
  restoreDrill: 'operator',
  pruneCheckpoints: (request) => (request.dryRun ? { role: 'operator', what: 'a prune dry run' } : { role: 'admin', what: 'pruning checkpoints' }),
  deleteCheckpoint: 'admin',
  // Re-wraps every data key of the store with the coordinator's current master key.
  rotateKeys: 'admin',
};

/** Which role an RPC needs for this request. Throws for an RPC missing from the table. */
export function neededRole(method: string, request: unknown): Need {
  const rule = (ADMIN_RPC_ROLES as Record<string, Role | ((request: unknown) => Need) | undefined>)[method];
  if (rule === undefined) throw new Error(`admin RPC ${method} has no entry in ADMIN_RPC_ROLES (services/coordinator/admin-auth.ts): refusing to serve it`);
  return typeof rule === 'string' ? { role: rule, what: method } : rule(request ?? {});
}

const callers = new WeakMap<object, AdminCaller>();

/** The authenticated caller of a call that went through guardAdminService. */
export function callerOf(call: object): AdminCaller | undefined {
  return callers.get(call);
}

/** Throws PermissionDeniedError unless `caller` holds `need.role`. */
export function requireRole(caller: AdminCaller | undefined, need: Need): void {
  if (caller === undefined || roleAllows(caller.role, need.role)) return;
  throw new PermissionDeniedError(
    `${caller.name} has the ${caller.role} role; ${need.what} needs the ${need.role} role (docs/SECURITY.md#who-may-do-what); nothing was done`,
  );
}

/**
 * Wraps every handler of the admin service so that it runs only for an identified caller whose
 * role allows the call. Throws at start-up for an RPC without an ADMIN_RPC_ROLES entry.
 */
export function guardAdminService(
  definition: grpc.ServiceDefinition,
  implementation: grpc.UntypedServiceImplementation,
  authenticator: AdminAuthenticator,
  log: Logger,
): grpc.UntypedServiceImplementation {
  const guarded: grpc.UntypedServiceImplementation = {};
  for (const [method, spec] of Object.entries(definition)) {
    if (!(method in ADMIN_RPC_ROLES)) neededRole(method, {});
    const handler = implementation[method];
    if (handler === undefined) continue;
    const admit = (call: AdminCall & { request?: unknown }): void => {
      let caller: AdminCaller | undefined;
      try {
        caller = authenticator.identify(call);
        const need = neededRole(method, call.request);
        requireRole(caller, need);
        if (need.role !== 'read') log.info('admin API call', { caller: caller.name, role: caller.role, via: caller.via, method });
      } catch (err) {
        log.warn('admin API call refused', { ...(caller ? { caller: caller.name, role: caller.role } : { peer: call.getPeer() }), method, err: (err as Error).message });
        throw err;
      }
      callers.set(call, caller);
    };
    if (spec.responseStream) {
      const stream = handler as grpc.handleServerStreamingCall<unknown, unknown>;
      guarded[method] = (call: grpc.ServerWritableStream<unknown, unknown>) => {
        try {
          admit(call);
        } catch (err) {
          // grpc-js turns an 'error' event on a server stream into the call's final status.
          call.emit('error', toServiceError(err));
          return;
        }
        stream.call(implementation, call);
      };
    } else {
      const unaryHandler = handler as grpc.handleUnaryCall<unknown, unknown>;
      guarded[method] = (call: grpc.ServerUnaryCall<unknown, unknown>, callback: grpc.sendUnaryData<unknown>) => {
        try {
          admit(call);
        } catch (err) {
          callback(toServiceError(err));
          return;
        }
        unaryHandler.call(implementation, call, callback);
      };
    }
  }
  return guarded;
}
