#!/usr/bin/env python3
"""Connect time of the unmodified Kandy.js 4.20 in headless Chromium and of the Swift SDK, against
one `kandy-link serve` node, measured in one run.

Starts a node (TLS, the development certificate) in a new folder with one user, then times RUNS
connects of each client: setCredentials → subscribe(['call', 'Presence', 'IM'], forceLogOut) →
subscribed (Kandy.js: its subscription:change with the services subscribed; the SDK: subscribe
returning, its channel open). Each connect is a new client instance, followed, untimed, by
unsubscribe and destroy; the first of each is left out (it pays for bcrypt and TLS set-up).

usage: kandyjs-connect.py KANDY_JS KANDY_LINK [--runs N]
  KANDY_JS: dist/kandy.js of Kandy.js 4.20; KANDY_LINK: the kandy-link binary (a release build).
"""
import argparse, json, os, statistics, subprocess
from kandyjs_harness import browser, dev_tls_node, serve_page

PAGE = r"""<!doctype html><html><head><meta charset="utf-8"><script src="/kandy.js"></script></head><body><script>
window.connectOnce = async function (port, username, password) {
  const kandy = Kandy.create({
    logs: { logLevel: 'error' },
    authentication: { server: { base: '127.0.0.1', port: port, protocol: 'https' } },
    subscription: { websocket: { server: '127.0.0.1', port: port } },
    call: { iceServers: [] }
  });
  const subscribed = () => kandy.services.getSubscriptions().subscribed.length;
  const until = (done) => new Promise((resolve, reject) => {
    kandy.on('subscription:change', () => { if (done()) resolve(); });
    kandy.on('subscription:error', (e) => reject(new Error(JSON.stringify(e))));
  });
  const started = performance.now();
  const up = until(() => subscribed() > 0);
  kandy.setCredentials({ username: username, password: password });
  kandy.services.subscribe(['call', 'Presence', 'IM'], { forceLogOut: true });
  await up;
  const elapsed = performance.now() - started;
  const down = until(() => subscribed() === 0);
  kandy.services.unsubscribe(['call', 'Presence', 'IM']);
  await down;
  kandy.destroy();
  return elapsed;
};
</script></body></html>"""


def percentile(samples, p):
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('kandy_js')
    parser.add_argument('kandy_link')
    parser.add_argument('--runs', type=int, default=200)
    args = parser.parse_args()
    binary = os.path.abspath(args.kandy_link)
    user, password = 'alice@example.com', 'connect-bench-password'

    with dev_tls_node(binary, [user], password) as (port, folder):
        page = browser()
        try:
            page.set_script_timeout(30)
            page.get(f'http://127.0.0.1:{serve_page(args.kandy_js, PAGE)}/')
            times = []
            for run in range(args.runs + 1):
                elapsed = page.execute_async_script(
                    'const done = arguments[arguments.length - 1];'
                    'connectOnce(arguments[0], arguments[1], arguments[2])'
                    '.then(done, (e) => done("failed: " + e.message));', port, user, password)
                if isinstance(elapsed, str):
                    raise SystemExit(f'Kandy.js connect {run}: {elapsed}')
                if run > 0:
                    times.append(elapsed)
        finally:
            page.quit()

        result = os.path.join(folder, 'sdk.json')
        subprocess.run([binary, 'bench', 'connect', '--server', f'https://127.0.0.1:{port}', '--trust',
                        os.path.join(folder, 'dev-tls-certificate.pem'), '--user', user, '--runs', str(args.runs),
                        '--clients', '1', '--json', result],
                       env=dict(os.environ, KANDY_LINK_PASSWORD=password), check=True, capture_output=True)
        sdk = {row['name']: row['value'] for row in json.load(open(result))['rows']}

    kandyjs_p50, kandyjs_p99 = percentile(times, 0.5), percentile(times, 0.99)
    print(f'connect, {args.runs} runs each against one node (setCredentials → subscribed, channel open):')
    print(f'  Kandy.js 4.20 in headless Chromium  p50 {kandyjs_p50:6.2f} ms   p99 {kandyjs_p99:6.2f} ms'
          f'   mean {statistics.mean(times):6.2f} ms')
    print(f'  Swift SDK (kandy-link bench connect) p50 {sdk["connect p50"]:6.2f} ms   p99 {sdk["connect p99"]:6.2f} ms')
    print(f'  SDK / Kandy.js at p50: {sdk["connect p50"] / kandyjs_p50:.2f}')


if __name__ == '__main__':
    main()
