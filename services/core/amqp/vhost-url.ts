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

/** `scheme://user:password@`: the credentials of a URL anywhere in a text (the password ends at the authority's last `@`). */
const URL_CREDENTIALS = /\b([a-z][a-z0-9+.-]*:\/\/)([^\s:/?#@]*):([^\s/?#]*)@/gi;

/** The text with the password of every URL in it replaced (amqp://user:***@host), for logs. */
export function redactUrlsIn(text: string): string {
  return text.replace(URL_CREDENTIALS, '$1$2:***@');
}

/** The URL with no password in it (the user stays): what may be stored or shown of a broker URL. */
export function withoutPassword(url: string): string {
  const parsed = new URL(url);
  parsed.password = '';
  return parsed.toString();
}

/** True when the URL carries a password. */
export function hasPassword(url: string): boolean {
  try {
    return new URL(url).password !== '';
  } catch {
    return false;
  }
}

/** The URL with `password` set (percent-encoded as a URL needs). */
export function withPassword(url: string, password: string): string {
  const parsed = new URL(url);
  parsed.password = encodeURIComponent(password);
  return parsed.toString();
}
