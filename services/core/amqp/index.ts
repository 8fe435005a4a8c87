/**
 * RabbitMQ for the other modules: connections per vhost, the management API, queue probes and
 * vhost URLs. An entry of its own, so that importing core does not load amqplib.
 */
export { amqpSocketOptions, configureAmqpTls } from './amqp-tls.js';
export { brokerCheck, type BrokerCheck } from './broker-check.js';
export { ManagementClient } from './management-client.js';
export { type BindingInfo, type ConsumerInfo, type ExchangeInfo, type QueueCensusCounters, type NodeResources, queueBindings, type QueueInfo } from './management-types.js';
export { argumentsConflict, probeQueue, queueDeclareOptions, queueExists } from './queue-probe.js';
export { VhostConnections } from './vhost-connections.js';
export { amqpUrlForVhost, hasPassword, redactUrl, withoutPassword, withPassword } from './vhost-url.js';
