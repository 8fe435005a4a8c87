/** The AMQP URL for one vhost: the same broker and credentials, with the vhost as its path. */
export function amqpUrlForVhost(baseUrl: string, vhost: string): string {
  const url = new URL(baseUrl);
  url.pathname = `/${encodeURIComponent(vhost)}`;
  return url.toString();
}

/** The vhost an AMQP URL names ('/' when it names none). */
export function vhostOfAmqpUrl(amqpUrl: string): string {
  const path = new URL(amqpUrl).pathname;
  if (path === '' || path === '/') return '/';
  return decodeURIComponent(path.slice(1));
}

/** The URL with its password replaced, for logs and error messages. */
export function redactUrl(url: string): string {
  try {
    const parsed = new URL(url);
    if (parsed.password) parsed.password = '***';
    return parsed.toString();
  } catch {
    return '<invalid url>';
  }
}
