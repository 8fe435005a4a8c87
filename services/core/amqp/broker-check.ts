/**
 * Readiness check of the broker (infrastructure/readiness.ts): one AMQP connection of its own to
 * the vhost of the configured URL, kept open. The broker answers while that connection is open;
 * when it closes (broker stopped, network cut, heartbeat missed) the check fails until a new one
 * opens. Its own connection, because a standby or an idle worker holds no other.
 */
import type { Logger } from '../infrastructure/log.js';
import type { ReadinessCheck } from '../infrastructure/readiness.js';
import { VhostConnections } from './vhost-connections.js';
import { vhostOfAmqpUrl } from './vhost-url.js';

export interface BrokerCheck extends ReadinessCheck {
  /** Closes the check's connection. */
  close(): Promise<void>;
}

/** `clientName` names the connection in the management UI, e.g. "tidemark coordinator c1 health". */
export function brokerCheck(amqpUrl: string, clientName: string, log: Logger): BrokerCheck {
  const connections = new VhostConnections(amqpUrl, log, clientName);
  const vhost = vhostOfAmqpUrl(amqpUrl);
  return {
    name: 'broker',
    // A live connection is returned as is; a closed one is opened again (or fails).
    probe: async () => void (await connections.connect(vhost)),
    close: () => connections.close(),
  };
}
