// "Configure your devices": the address to give the router (or each device) as its DNS server, the steps per
// system, and hearth's root certificate with its install steps. The wizard's last step, the Devices page, and
// the proxy page's certificate card all show it from here.
import { useEffect, useState } from 'preact/hooks';
import { api, ApiError, CertificatesView, NetworkView } from './api';
import { Alert } from './alert';

export function useNetwork(): { net: NetworkView | null; certs: CertificatesView | null; error: string } {
  const [net, setNet] = useState<NetworkView | null>(null);
  const [certs, setCerts] = useState<CertificatesView | null>(null);
  const [error, setError] = useState('');
  useEffect(() => {
    api<NetworkView>('GET', '/api/v1/system/network')
      .then(setNet)
      .catch((e: ApiError) => setError(`This machine's addresses could not be read: ${e.message}`));
    api<CertificatesView>('GET', '/api/v1/tls/certificates')
      .then(setCerts)
      .catch(() => undefined);
  }, []);
  return { net, certs, error };
}

/** Install steps for hearth's root certificate, per system, with the download link and fingerprint. */
export function CaInstall({ sha256 }: { sha256?: string | null }) {
  return (
    <div data-testid="ca-install">
      <p>
        Sites with hearth's own certificates (names under <code>.home.arpa</code>, <code>.lan</code>, <code>.local</code>, …) are trusted by devices that
        have hearth's root certificate installed; until then browsers warn about them.{' '}
        <a href="/ca.crt" download="hearth-root-ca.crt">
          Download the root certificate
        </a>
        {sha256 && (
          <span class="muted small fingerprint">
            {' '}
            (SHA-256 <code>{sha256}</code>: compare it with what your device shows)
          </span>
        )}
      </p>
      <ul class="small">
        <li>
          <strong>iPhone/iPad:</strong> open the download in Safari, install the profile in Settings → General → VPN &amp; Device Management, then turn it on in
          Settings → General → About → Certificate Trust Settings.
        </li>
        <li>
          <strong>Android:</strong> Settings → Security → Encryption &amp; credentials → Install a certificate → CA certificate.
        </li>
        <li>
          <strong>Windows:</strong> open the file → Install Certificate → Local Machine → “Trusted Root Certification Authorities”.
        </li>
        <li>
          <strong>macOS:</strong> open the file in Keychain Access (System keychain), then set “When using this certificate” to Always Trust.
        </li>
        <li>
          <strong>Linux:</strong> copy it to <code>/usr/local/share/ca-certificates/hearth.crt</code> and run <code>sudo update-ca-certificates</code>; Firefox:
          Settings → Certificates → Import.
        </li>
      </ul>
    </div>
  );
}

/** The whole guide: addresses, DNS set-up per system, the certificate. */
export function DeviceGuide() {
  const { net, certs, error } = useNetwork();
  if (!net) return error ? <Alert>{error}</Alert> : <p aria-busy="true">Finding this machine's addresses…</p>;
  const main = net.addresses[0]?.address;
  const v4 = net.addresses.filter((a) => !a.address.includes(':'));
  const v6 = net.addresses.filter((a) => a.address.includes(':'));
  const port = net.dns_port ?? 53;
  const dnsAt = main ?? 'this machine’s address';
  const admin = net.mdns_name ?? main;
  return (
    <div class="guide" data-testid="device-guide">
      <section>
        <h3>hearth's address</h3>
        {main ? (
          <p>
            Devices reach hearth at <strong class="address" data-testid="lan-address">{main}</strong>
            {net.addresses[0] && <span class="muted small"> ({net.addresses[0].interface})</span>}
            {net.mdns_name && (
              <>
                {' '}
                and <strong>{net.mdns_name}</strong>
              </>
            )}
            .
          </p>
        ) : (
          <Alert>hearth found no network address other devices can use: is this machine connected to your network?</Alert>
        )}
        {(v4.length > 1 || v6.length > 0) && (
          <p class="muted small">
            Other addresses: {net.addresses.slice(1).map((a) => `${a.address} (${a.interface})`).join(', ')}. Give the router an IPv4 address; use the IPv6 one
            where a device asks for one.
          </p>
        )}
        {!net.dns_reachable && (
          <Alert>
            hearth's DNS listens only on this machine ({net.dns_listen.join(', ')}), so other devices cannot use it yet. In Settings → DNS, set the listen
            address to <code>0.0.0.0:53</code> (or <code>[::]:53</code>).
          </Alert>
        )}
        {net.dns_reachable && port !== 53 && (
          <Alert>
            hearth's DNS answers on port {port}. Routers and phones only ask port 53: set the DNS listen address to port 53 in Settings → DNS.
          </Alert>
        )}
      </section>

      <section>
        <h3>Use hearth for every device: the router</h3>
        <ol class="small">
          <li>Open your router's admin page (often http://192.168.1.1 or http://fritz.box) and find the DHCP or LAN settings.</li>
          <li>
            Set the <strong>DNS server</strong> handed out to devices to <code>{dnsAt}</code>, and leave the second DNS server empty (a second, unfiltered one lets
            ads through).
          </li>
          <li>Save; devices pick the change up when they reconnect (turn Wi-Fi off and on, or wait for the lease to renew).</li>
        </ol>
        <p class="muted small">
          Some routers only accept their own address as DNS server: then set hearth as the router's own upstream DNS server (WAN/Internet settings), or set it
          on each device below.
        </p>
      </section>

      <section>
        <h3>Or one device at a time</h3>
        <details>
          <summary>Windows</summary>
          <p class="small">
            Settings → Network &amp; internet → your connection → Hardware properties → DNS server assignment → Edit → Manual → IPv4 on → Preferred DNS{' '}
            <code>{dnsAt}</code>.
          </p>
        </details>
        <details>
          <summary>macOS</summary>
          <p class="small">
            System Settings → Network → your connection → Details → DNS → “+” → <code>{dnsAt}</code>, and remove the other entries.
          </p>
        </details>
        <details>
          <summary>Android</summary>
          <p class="small">
            Settings → Network &amp; internet → Internet → your Wi-Fi → ✎ → Advanced → IP settings: Static → DNS 1 <code>{dnsAt}</code>. Android's “Private DNS”
            must be off or set to a name whose certificate the phone trusts
            {net.dot_port ? ` (hearth answers DNS over TLS on port ${net.dot_port})` : ''}.
          </p>
        </details>
        <details>
          <summary>iPhone / iPad</summary>
          <p class="small">
            Settings → Wi-Fi → ⓘ next to your network → Configure DNS → Manual → remove the servers → Add Server <code>{dnsAt}</code>.
          </p>
        </details>
        <details>
          <summary>Linux</summary>
          <p class="small">
            With NetworkManager: <code>nmcli connection modify &lt;name&gt; ipv4.dns {dnsAt} ipv4.ignore-auto-dns yes</code>, then reconnect.
          </p>
        </details>
        {net.https_port && main && (
          <p class="muted small">
            Encrypted DNS: DNS over HTTPS at <code>https://{admin}{net.https_port === 443 ? '' : `:${net.https_port}`}/dns-query</code>
            {net.dot_port ? `, DNS over TLS on port ${net.dot_port}` : ''}.
          </p>
        )}
      </section>

      <section>
        <h3>Check it works</h3>
        <p class="small">
          On a configured device, open a web page, then look at DNS → Query log here: the device's address appears with its questions.
        </p>
      </section>

      {certs?.internal_ca && (
        <section>
          <h3>Trust hearth's HTTPS sites</h3>
          <CaInstall sha256={certs.internal_root_sha256} />
        </section>
      )}
    </div>
  );
}
