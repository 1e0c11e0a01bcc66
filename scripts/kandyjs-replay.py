#!/usr/bin/env python3
"""The unmodified Kandy.js 4.20 in headless Chromium across a lost notification channel: what the
platform replays on its reconnect, and what the app ends up with.

Starts a node (TLS, the development certificate) with alice and bob. Bob is Kandy.js in the page,
subscribed to IM, with a keep-alive every second (Kandy.js notices a dead socket when a keep-alive
cannot be sent, and then reconnects). Alice sends bob FIRST instant messages over REST; once the
page has them all, the page closes bob's WebSocket under Kandy.js, alice sends LATER more, and
Kandy.js reconnects to the same channel. The node then writes a `missed` marker and the channel's
replay window (its last 99 notifications: with the marker, the 100 ids Kandy.js remembers, so it
drops them all as duplicates) and what was queued while bob was away. Passes when the app has every message once, in order, and the
reconnected socket carried both the replay and the queued messages.

usage: kandyjs-replay.py KANDY_JS KANDY_LINK [--first N] [--later N]
  KANDY_JS: dist/kandy.js of Kandy.js 4.20; KANDY_LINK: the kandy-link binary.
"""
import argparse, base64, json, os, ssl, urllib.request
from kandyjs_harness import browser, dev_tls_node, serve_page, wait_for

WINDOW = 99  # the notifications the node replays on a reconnect, after its `missed` marker

PAGE = r"""<!doctype html><html><head><meta charset="utf-8"><script>
// Every WebSocket the page opens, and the instant messages each carried.
window.sockets = [];
const Native = window.WebSocket;
window.WebSocket = function (url, protocols) {
  const ws = protocols === undefined ? new Native(url) : new Native(url, protocols);
  ws.instantMessages = [];
  ws.addEventListener('message', (event) => {
    const body = JSON.parse(event.data).notificationMessage;
    if (body && body.imnotificationParams) ws.instantMessages.push(body.imnotificationParams.msgText);
  });
  window.sockets.push(ws);
  return ws;
};
window.WebSocket.prototype = Native.prototype;
Object.assign(window.WebSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
</script><script src="/kandy.js"></script></head><body><script>
window.start = async function (port, username, password) {
  window.kandy = Kandy.create({
    logs: { logLevel: 'error' },
    authentication: { server: { base: '127.0.0.1', port: port, protocol: 'https' } },
    subscription: { websocket: { server: '127.0.0.1', port: port } },
    connectivity: { pingInterval: 1000, reconnectDelay: 500 },
    call: { iceServers: [] }
  });
  const subscribed = new Promise((resolve, reject) => {
    kandy.on('subscription:change', () => { if (kandy.services.getSubscriptions().subscribed.length) resolve(); });
    kandy.on('subscription:error', (e) => reject(new Error(JSON.stringify(e))));
  });
  kandy.setCredentials({ username: username, password: password });
  kandy.services.subscribe(['IM'], { forceLogOut: true });
  await subscribed;
};
// The texts of the messages the app has, in its order.
window.received = function () {
  return kandy.conversation.getAll().flatMap((c) => c.getMessages().map((m) => m.parts[0].text));
};
</script></body></html>"""


def wait_until(page, script, expected, seconds, what):
    wait_for(lambda: page.execute_script(script) == expected, seconds,
             lambda: f'{what}: still {page.execute_script(script)!r} after {seconds} s, expected {expected!r}')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('kandy_js')
    parser.add_argument('kandy_link')
    parser.add_argument('--first', type=int, default=150)
    parser.add_argument('--later', type=int, default=20)
    args = parser.parse_args()
    alice, bob, password = 'alice@example.com', 'bob@example.com', 'replay-check-password'

    with dev_tls_node(args.kandy_link, [alice, bob], password) as (port, folder):
        trust = ssl.create_default_context(cafile=os.path.join(folder, 'dev-tls-certificate.pem'))
        credential = base64.b64encode(f'{alice}:{password}'.encode()).decode()

        def send(text):
            body = json.dumps({'imRequest': {'toUrl': bob, 'message': text, 'charset': 'UTF-8', 'type': 'A2'}})
            request = urllib.request.Request(
                f'https://127.0.0.1:{port}/rest/version/1/user/{alice}/instantmessage', data=body.encode(),
                headers={'Content-Type': 'application/json', 'Authorization': f'Basic {credential}'})
            with urllib.request.urlopen(request, context=trust) as response:
                if response.status != 200:
                    raise SystemExit(f'sending {text}: HTTP {response.status}')

        texts = [f'm{index}' for index in range(1, args.first + args.later + 1)]
        page = browser()
        try:
            page.set_script_timeout(30)
            page.get(f'http://127.0.0.1:{serve_page(args.kandy_js, PAGE)}/')
            page.execute_async_script(
                'const done = arguments[arguments.length - 1];'
                'start(arguments[0], arguments[1], arguments[2]).then(() => done(), (e) => done(e.message));',
                port, bob, password)
            for text in texts[:args.first]:
                send(text)
            wait_until(page, 'return received().length', args.first, 30, 'messages before the drop')
            page.execute_script('sockets[sockets.length - 1].close()')
            wait_until(page, 'return sockets[sockets.length - 1].readyState', 3, 10, 'the dropped socket')
            for text in texts[args.first:]:
                send(text)
            wait_until(page, 'return sockets.length', 2, 30, 'the reconnect')
            # The replay window and the queue: everything a duplicate could come with.
            wait_until(page, 'return sockets[1].instantMessages.length', WINDOW + args.later, 30,
                       'frames on the reconnected socket')
            wait_until(page, 'return received().length', len(texts), 30, 'messages after the reconnect')
            received = page.execute_script('return received()')
            first_socket, second_socket = page.execute_script(
                'return sockets.map((s) => s.instantMessages)')
        finally:
            page.quit()

    replayed = texts[args.first - WINDOW:args.first]
    queued = texts[args.first:]
    print(f'Kandy.js 4.20, {args.first} messages, its channel dropped, {args.later} more, reconnected:')
    print(f'  the first socket carried {len(first_socket)} messages ({first_socket[0]} … {first_socket[-1]})')
    print(f'  the reconnected socket carried {len(second_socket)}: {second_socket[0]} … {second_socket[-1]}')
    print(f'  the app has {len(received)} messages, {len(set(received))} distinct: {received[0]} … {received[-1]}')
    problems = []
    if received != texts:
        problems.append('the app does not have every message once, in order')
    if first_socket != texts[:args.first]:
        problems.append('the first socket did not carry the first messages in order')
    if second_socket != replayed + queued:
        problems.append(f'the reconnected socket carried {second_socket[:3]}…, not the replay window then the queue')
    if problems:
        raise SystemExit('; '.join(problems))
    print(f'  = the replay window ({replayed[0]} … {replayed[-1]}, dropped by Kandy.js as already had), '
          f'then the {len(queued)} queued while away: every message once, in order')


if __name__ == '__main__':
    main()
