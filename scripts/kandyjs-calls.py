#!/usr/bin/env python3
"""Two pages with the unmodified Kandy.js 4.20 client (alice and bob) in headless Chromium with fake
media devices make calls through a running `kandy-link serve`; prints what each page saw.

usage: kandyjs-calls.py KANDY_JS PORT [--bob-port PORT] [--turn URI] [--relay] [--restart CMD] [--password PW]
       kandyjs-calls.py KANDY_JS PORT --swift KANDY_LINK   (alice's page and the Swift SDK's `kandy-link`
                                                             as bob: the page calls it, then it calls the page)
"""
import argparse, json, subprocess, time
from kandyjs_harness import browser, serve_page, wait_for

PAGE = r"""<!doctype html><html><head><meta charset="utf-8">
<script>
// Instrumentation: keep every peer connection (for getStats) and force relay when asked.
window.events = []; window.pcs = [];
const Native = window.RTCPeerConnection;
window.RTCPeerConnection = function (config, ...rest) {
  config = Object.assign({}, config || {});
  if (window.FORCE_RELAY) config.iceTransportPolicy = 'relay';
  window.pcConfigs = (window.pcConfigs || []).concat([JSON.parse(JSON.stringify(config))]);
  const pc = new Native(config, ...rest); window.pcs.push(pc); return pc;
};
window.RTCPeerConnection.prototype = Native.prototype;
Object.keys(Native).forEach(k => { window.RTCPeerConnection[k] = Native[k]; });
</script>
<script src="/kandy.js"></script></head><body>
<div id="remote-container"></div><div id="local-container"></div>
<script>
const q = new URLSearchParams(location.search);
window.FORCE_RELAY = q.get('relay') === '1';
const turn = q.get('turn');
const kandy = Kandy.create({
  logs: { logLevel: 'warn' },
  authentication: { server: { base: '127.0.0.1', port: q.get('port'), protocol: 'https' } },
  subscription: { websocket: { server: '127.0.0.1', port: q.get('port') } },
  call: { serverTurnCredentials: true,
          iceServers: turn ? [{ urls: turn }] : [] }
});
window.kandy = kandy;
function log(type, detail) { window.events.push({ t: Date.now(), type, detail }); }
for (const name of ['auth:change', 'subscription:change', 'subscription:error', 'call:start', 'call:receive',
                    'call:stateChange', 'call:operation', 'call:newTrack', 'call:trackEnded', 'ws:change']) {
  kandy.on(name, (params) => {
    let detail = JSON.parse(JSON.stringify(params || {}));
    if (params && params.callId) {
      const call = kandy.call.getById(params.callId);
      if (call) detail.state = call.state, detail.remote = call.remoteParticipant, detail.callError = call.error;
    }
    log(name, detail);
  });
}
kandy.setCredentials({ username: q.get('user'), password: q.get('password') });
kandy.services.subscribe(['call', 'Presence', 'IM'], { forceLogOut: true });
window.inbound = async () => {
  const out = {};
  for (const pc of window.pcs) {
    if (pc.connectionState === 'closed') continue;
    const stats = await pc.getStats();
    stats.forEach(s => {
      if (s.type === 'inbound-rtp') out[s.kind] = (out[s.kind] || 0) + (s.bytesReceived || 0);
      if (s.type === 'candidate-pair' && s.nominated && s.state === 'succeeded') {
        const local = stats.get(s.localCandidateId), remote = stats.get(s.remoteCandidateId);
        out.pair = (local && local.candidateType) + '/' + (remote && remote.candidateType);
      }
    });
  }
  return out;
};
</script></body></html>"""


class Page:
    def __init__(self, name, url):
        self.name = name
        self.driver = browser()
        self.driver.get(url)
        self.seen = 0

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def events(self):
        return self.js('return window.events')

    def wait(self, predicate, what, timeout=20):
        return wait_for(lambda: next((event for event in self.events() if predicate(event)), None), timeout,
                        lambda: f'{self.name}: no {what} within {timeout}s; saw {json.dumps(self.events()[-8:])}')

    def subscribed(self):
        return self.js('return kandy.services.getSubscriptions().subscribed.length > 0')

    def state(self, call_id, state, timeout=20):
        return self.wait(lambda e: e['type'] == 'call:stateChange' and e['detail'].get('callId') == call_id
                         and e['detail'].get('state') == state, f'state {state}', timeout)

    def inbound(self):
        return self.driver.execute_async_script('const done = arguments[0]; window.inbound().then(done)')

    def report(self, since=0):
        for e in self.events()[since:]:
            if e['type'] in ('call:newTrack', 'call:trackEnded'):
                continue
            d = e['detail']
            extra = {k: d[k] for k in ('state', 'transition', 'error', 'callError', 'operation', 'reason', 'error')
                     if d.get(k) not in (None, {}, [])}
            print(f'  {self.name}: {e["type"]} {json.dumps(extra)}')
        return len(self.events())


def media_flows(page, label):
    first = page.inbound()
    time.sleep(2)
    second = page.inbound()
    print(f'  {page.name} {label}: inbound bytes {first} -> {second}')
    return all(second.get(k, 0) > first.get(k, 0) for k in ('audio', 'video') if k in first)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('kandy_js')
    parser.add_argument('port')
    parser.add_argument('--relay', action='store_true')
    parser.add_argument('--turn')
    parser.add_argument('--password', default='secret-pw')
    parser.add_argument('--bob-port')
    parser.add_argument('--restart', help='a shell command that restarts the platform mid-call')
    parser.add_argument('--swift', help="the kandy-link binary: bob is the Swift SDK's `answer` and `call`")
    args = parser.parse_args()
    page_port = serve_page(args.kandy_js, PAGE)

    def url(user, port):
        query = f'port={port}&user={user}&password={args.password}'
        if args.turn:
            query += '&turn=' + args.turn
        if args.relay:
            query += '&relay=1'
        return f'http://127.0.0.1:{page_port}/?{query}'

    if args.swift:
        return with_swift(args, Page('alice', url('alice@example.com', args.port)))
    alice = Page('alice', url('alice@example.com', args.port))
    bob = Page('bob', url('bob@example.com', args.bob_port or args.port))
    try:
        for page in (alice, bob):
            wait_for(page.subscribed, 20, lambda: f'{page.name} did not subscribe: {page.events()}')
        print('both subscribed')

        print('call 1: alice calls bob with audio and video; bob answers; hold, unhold; bob hangs up')
        a_id = alice.js("return kandy.call.make('bob@example.com', {audio: true, video: true})")
        b_recv = bob.wait(lambda e: e['type'] == 'call:receive', 'call:receive')
        b_id = b_recv['detail']['callId']
        bob.state(b_id, 'Ringing')
        alice.state(a_id, 'Ringing')
        bob.js("kandy.call.answer(arguments[0], {audio: true, video: true})", b_id)
        alice.state(a_id, 'Connected')
        bob.state(b_id, 'Connected')
        time.sleep(2)
        ok = media_flows(alice, 'connected') & media_flows(bob, 'connected')
        print('  media both ways:', ok, ' pcConfig alice:', alice.js('return window.pcConfigs'))
        if args.restart:

            print('  restarting the platform mid-call:', args.restart)
            subprocess.run(args.restart, shell=True, check=True)
            started = time.time()
            for page in ((alice,) if args.bob_port else (alice, bob)):  # with two nodes, alice's restarts
                before = len([e for e in page.events() if e['type'] == 'ws:change'])

                def reconnected():
                    return len([e for e in page.events() if e['type'] == 'ws:change']) >= before + 3 \
                        and page.js('return kandy.connection.getSocketState().connected')

                def failure():
                    logs = [e['message'][:200] for e in page.driver.get_log('browser')][-15:]
                    return (f'{page.name} did not reconnect: {page.js("return kandy.getConnection()")}'
                            f'\n{json.dumps(page.events()[-6:])}\n' + '\n'.join(logs))

                # Kandy.js notices a lost socket at its next keepalive (up to 30 s), then reopens it.
                wait_for(reconnected, 90, failure, every=0.2)
            print(f'  both pages reconnected after {time.time() - started:.1f} s')
            print('  media meanwhile:', media_flows(alice, 'after restart') & media_flows(bob, 'after restart'))
        alice.js("kandy.call.hold(arguments[0])", a_id)
        alice.state(a_id, 'On Hold')
        bob.state(b_id, 'On Hold')
        alice.js("kandy.call.unhold(arguments[0])", a_id)
        alice.wait(lambda e: e['type'] == 'call:stateChange' and e['detail'].get('state') == 'Connected'
                   and e['detail'].get('previous', {}).get('state') == 'On Hold', 'unhold')
        time.sleep(2)
        ok2 = media_flows(alice, 'after unhold') & media_flows(bob, 'after unhold')
        print('  media both ways after unhold:', ok2)
        bob.js("kandy.call.end(arguments[0])", b_id)
        end = alice.state(a_id, 'Ended')
        print('  alice ended with', json.dumps(end['detail'].get('transition')))

        print('call 2: bob rejects')
        a2 = alice.js("return kandy.call.make('bob@example.com', {audio: true, video: false})")
        b2 = bob.wait(lambda e: e['type'] == 'call:receive' and e['detail']['callId'] != b_id, 'second call')['detail']['callId']
        bob.state(b2, 'Ringing')
        bob.js("kandy.call.reject(arguments[0])", b2)
        end2 = alice.state(a2, 'Ended')
        print('  alice ended with', json.dumps(end2['detail'].get('transition')))

        print('call 3: alice cancels before the answer')
        a3 = alice.js("return kandy.call.make('bob@example.com', {audio: true, video: false})")
        b3 = bob.wait(lambda e: e['type'] == 'call:receive' and e['detail']['callId'] not in (b_id, b2), 'third call')['detail']['callId']
        bob.state(b3, 'Ringing')
        alice.state(a3, 'Ringing')
        alice.js("kandy.call.end(arguments[0])", a3)
        bob.state(b3, 'Cancelled', timeout=10)
        print('  bob: Cancelled')

        print('call 4: to an unknown user')
        a4 = alice.js("return kandy.call.make('nobody@example.com', {audio: true, video: false})")
        end4 = alice.state(a4, 'Ended')
        print('  alice ended with error', json.dumps(end4['detail'].get('error') or end4['detail'].get('callError')))
        print('the tutorial\'s end: unsubscribe, destroy')
        for page in (alice, bob):
            page.js("kandy.services.unsubscribe(['call', 'Presence', 'IM'])")
            wait_for(lambda: not page.subscribed(), 20, lambda: f'{page.name} did not unsubscribe')
            page.js('kandy.destroy()')
            print(f'  {page.name}: unsubscribed, destroyed')
        print('events seen by alice:')
        alice.report()
        print('events seen by bob:')
        bob.report()
        for page in (alice, bob):
            for entry in page.driver.get_log('browser'):
                if any(word in entry['message'] for word in ('saga', 'TypeError', 'Unhandled')):
                    print(f'  {page.name} console: {entry["message"][:300]}')
        print('RESULT', 'media ok' if ok and ok2 else 'MEDIA FAILED')
    finally:
        alice.driver.quit()
        bob.driver.quit()


def show(process):
    """What a `kandy-link` process printed, once it ended."""
    for line in process.stdout.read().splitlines():
        print('  swift bob:', line)
    print('  swift bob exited with', process.wait())


def loudness(path):
    """The recording's length, RMS level and zero crossings per second of its middle second."""
    import math, struct, wave
    try:
        recording = wave.open(path)
    except (OSError, EOFError, wave.Error) as error:
        return f'unreadable ({error})'
    frames, rate = recording.getnframes(), recording.getframerate()
    samples = struct.unpack('<%dh' % frames, recording.readframes(frames))
    middle = samples[frames // 2 - rate // 2: frames // 2 + rate // 2] or samples
    rms = math.sqrt(sum(x * x for x in middle) / max(len(middle), 1))
    crossings = sum(1 for a, b in zip(middle, middle[1:]) if a < 0 <= b)
    return f'{frames / rate:.1f} s, RMS {rms:.0f} of 32767, {crossings} zero crossings/s'


def with_swift(args, alice):
    """alice's page calls `kandy-link answer` as bob, then `kandy-link call` as bob calls the page."""
    def swift(*command):
        extra = ['--ice-server', args.turn] if args.turn else []
        extra += ['--relay'] if args.relay else []
        process = subprocess.Popen(
            [args.swift, *command, '--server', f'https://127.0.0.1:{args.port}', '--user', 'bob@example.com',
             '--password-stdin', '--duration', '6', *extra],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        process.stdin.write(args.password + '\n')
        process.stdin.close()
        return process

    try:
        wait_for(alice.subscribed, 20, lambda: 'alice did not subscribe')
        print('the page calls the Swift SDK (kandy-link answer)')
        answering = swift('answer', '--wait', '30', '--record', '/tmp/kandyjs-swift-answer.wav')
        time.sleep(3)  # its login and subscription
        call = alice.js("return kandy.call.make('bob@example.com', {audio: true, video: true})")
        try:
            alice.state(call, 'Connected', timeout=30)
        except BaseException:
            show(answering)
            raise
        time.sleep(1)
        media_flows(alice, 'connected to the Swift SDK')
        end = alice.state(call, 'Ended', timeout=30)
        print('  page: Connected, then Ended', json.dumps(end['detail'].get('transition')))
        show(answering)
        print('  recorded by the Swift SDK:', loudness('/tmp/kandyjs-swift-answer.wav'))

        print('the Swift SDK calls the page (kandy-link call alice@example.com); the page answers and holds')
        since = len(alice.events())
        calling = swift('call', 'alice@example.com', '--tone', '660', '--record', '/tmp/kandyjs-swift-call.wav')
        try:
            page_answers(alice, call, calling)
        except BaseException:
            show(calling)
            raise
        print('events seen by the page:')
        alice.report(since)
        for entry in alice.driver.get_log('browser'):
            if any(word in entry['message'] for word in ('saga', 'TypeError', 'Unhandled')):
                print(f'  page console: {entry["message"][:300]}')
    finally:
        alice.driver.quit()


def page_answers(alice, call, calling):
    incoming = alice.wait(lambda e: e['type'] == 'call:receive' and e['detail']['callId'] != call, 'call:receive',
                          timeout=30)['detail']['callId']
    alice.state(incoming, 'Ringing')
    alice.js("kandy.call.answer(arguments[0], {audio: true, video: true})", incoming)
    alice.state(incoming, 'Connected')
    time.sleep(1)
    media_flows(alice, 'answering the Swift SDK')
    alice.js("kandy.call.hold(arguments[0])", incoming)
    alice.state(incoming, 'On Hold')
    alice.js("kandy.call.unhold(arguments[0])", incoming)
    alice.wait(lambda e: e['type'] == 'call:stateChange' and e['detail'].get('callId') == incoming
               and e['detail'].get('state') == 'Connected' and e['detail'].get('previous', {}).get('state') == 'On Hold',
               'unhold')
    end = alice.state(incoming, 'Ended', timeout=30)
    print('  page: Ringing, Connected, On Hold, Connected, Ended', json.dumps(end['detail'].get('transition')))
    show(calling)
    print('  recorded by the Swift SDK:', loudness('/tmp/kandyjs-swift-call.wav'))


if __name__ == '__main__':
    main()
