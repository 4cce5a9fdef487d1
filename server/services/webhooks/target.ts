import dns from 'node:dns/promises';
import ipaddr from 'ipaddr.js';

/**
 * The SSRF guard of outgoing webhooks: a URL's host is resolved and every address it resolves
 * to must be a public unicast one, unless an admin allowed its private network
 * (WEBHOOK_ALLOWED_PRIVATE_TARGETS). Cloud metadata endpoints are refused even then. The
 * sender then connects to the address checked here (no second lookup a DNS rebinding could
 * answer differently).
 */

/** Instance metadata services (AWS, GCP, Azure, Alibaba): refused whatever is allowed. */
const METADATA = ['169.254.169.254', '169.254.170.2', 'fd00:ec2::254', '100.100.100.200'].map((a) => ipaddr.parse(a).toNormalizedString());

export class TargetRefused extends Error {}

export interface Target {
  url: URL;
  address: string;
  family: 4 | 6;
}

/** The URL a webhook may have: http(s), no credentials in it; the message says what to fix. */
export function checkWebhookUrl(value: string): URL {
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    throw new TargetRefused('Give a full URL, e.g. https://tickets.example.org/hooks/downstream.');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new TargetRefused('Only http:// and https:// URLs can receive webhooks.');
  if (url.username || url.password) throw new TargetRefused('Put no user name or password in the URL: receivers check the signature instead.');
  return url;
}

function addressAllowed(raw: string, allowed: ReadonlyArray<[ipaddr.IPv4 | ipaddr.IPv6, number]>): boolean {
  const address = ipaddr.process(raw);
  if (METADATA.includes(address.toNormalizedString())) return false;
  if (address.range() === 'unicast') return true;
  return allowed.some(([net, bits]) => net.kind() === address.kind() && address.match([net, bits] as never));
}

/**
 * Resolves the URL's host and returns the address to connect to, or throws TargetRefused when
 * any address it resolves to is not allowed (a name with one private address among public ones
 * is refused: the resolver may hand out either).
 */
export async function resolveTarget(value: string, allowedRanges: readonly string[]): Promise<Target> {
  const url = checkWebhookUrl(value);
  const allowed = allowedRanges.map((cidr) => ipaddr.parseCIDR(cidr));
  const host = url.hostname.replace(/^\[|\]$/g, '');
  let addresses: Array<{ address: string; family: number }>;
  if (ipaddr.isValid(host)) addresses = [{ address: host, family: ipaddr.parse(host).kind() === 'ipv6' ? 6 : 4 }];
  else {
    try {
      addresses = await dns.lookup(host, { all: true, verbatim: true });
    } catch {
      throw new TargetRefused(`The host ${host} does not resolve.`);
    }
  }
  if (!addresses.length) throw new TargetRefused(`The host ${host} does not resolve.`);
  const refused = addresses.find((a) => !addressAllowed(a.address, allowed));
  if (refused) throw new TargetRefused(`${host} resolves to ${refused.address}, a private, loopback, link-local or metadata address; webhooks go to public addresses only unless an admin allows that network.`);
  return { url, address: addresses[0]!.address, family: addresses[0]!.family === 6 ? 6 : 4 };
}
