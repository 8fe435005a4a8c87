/**
 * gRPC conventions for the other modules (docs/API.md): the health service and its client, what a
 * service's health follows, and server reflection. An entry of its own, so that importing core
 * does not load the health and reflection libraries (they parse protos when loaded).
 */
export { checkHealth, type HealthCheckOptions, HealthStatus, OVERALL_HEALTH, type ServiceEntry, type ServingStatus } from './health-service.js';
export { findProtoDir, reflectionServices } from './reflection.js';
export { serveHealthOnly, ServiceHealth, type ServiceHealthOptions } from './service-health.js';
