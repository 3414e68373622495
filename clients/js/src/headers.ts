// Headers a browser sets itself and refuses from scripts (the Fetch standard's
// forbidden request headers). Part URLs may sign some of them (content-length,
// host); the HTTP stack sends them from the request itself, so they are skipped.
const forbidden = new Set([
  'accept-charset', 'accept-encoding', 'access-control-request-headers', 'access-control-request-method',
  'connection', 'content-length', 'cookie', 'cookie2', 'date', 'dnt', 'expect', 'host', 'keep-alive',
  'origin', 'referer', 'set-cookie', 'te', 'trailer', 'transfer-encoding', 'upgrade', 'via',
])

/** The part's `headers` minus those the HTTP stack sets itself. */
export function sendableHeaders(h: Record<string, string> | undefined): Record<string, string> {
  const out: Record<string, string> = {}
  for (const [k, v] of Object.entries(h ?? {})) {
    const l = k.toLowerCase()
    if (forbidden.has(l) || l.startsWith('proxy-') || l.startsWith('sec-')) continue
    out[k] = v
  }
  return out
}
