/**
 * The one identity of a queue across Tidemark: its vhost and name joined by a NUL, which neither
 * may contain, so two different queues never share a key. Maps in every module are keyed by it,
 * and restore progress is stored under it in Redis (restore-state.ts): the format must not change.
 */

/** The key of queue `queue` in vhost `vhost`. */
export function queueKey(vhost: string, queue: string): string {
  return `${vhost}\u0000${queue}`;
}

/** The vhost and queue name a {@link queueKey} was made from. */
export function splitQueueKey(key: string): { vhost: string; queue: string } {
  const [vhost, queue] = key.split('\u0000');
  return { vhost, queue };
}
