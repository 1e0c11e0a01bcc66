#!/usr/bin/env python3
"""The unmodified Kandy.js 4.20 client in headless Chromium uses the address book, the directory,
its own profile and the call history of a running `kandy-link serve`; prints what the page saw.

alice@example.com (with a profile: first name Alice, last name Åberg, phone +1 613 555 0100) and
bob@example.com (Bob Ørsted) must exist with the same password. alice adds, updates, fetches,
lists and removes contacts, searches the directory by each search type, fetches her profile,
calls bob (his page answers; alice hangs up) and lists the call history on both pages.

usage: kandyjs-directory.py KANDY_JS PORT [--second-port PORT] [--password PW]
  --second-port: bob's page, and a second alice page that lists the contact added through PORT,
                 use this node (two nodes sharing one PostgreSQL database).
"""
import argparse, json, time
from kandyjs_harness import browser, serve_page, wait_for

PAGE = r"""<!doctype html><html><head><meta charset="utf-8"><script src="/kandy.js"></script></head><body>
<div id="remote-container"></div><div id="local-container"></div>
<script>
const q = new URLSearchParams(location.search);
const kandy = Kandy.create({
  logs: { logLevel: 'warn' },
  authentication: { server: { base: '127.0.0.1', port: q.get('port'), protocol: 'https' } },
  subscription: { websocket: { server: '127.0.0.1', port: q.get('port') } },
  call: { iceServers: [] }
});
window.kandy = kandy; window.events = [];
for (const name of ['subscription:change', 'contacts:new', 'contacts:change', 'contacts:error', 'directory:change',
                    'directory:error', 'users:change', 'users:error', 'callHistory:change', 'callHistory:error',
                    'call:receive', 'call:stateChange']) {
  kandy.on(name, (params) => window.events.push({ type: name, detail: JSON.parse(JSON.stringify(params || {})) }));
}
kandy.setCredentials({ username: q.get('user'), password: q.get('password') });
kandy.services.subscribe(['call', 'Presence', 'IM'], { forceLogOut: q.get('force') !== '0' });
</script></body></html>"""


class Page:
    def __init__(self, name, url):
        self.name = name
        self.driver = browser()
        self.driver.get(url)

    def js(self, script, *args):
        return self.driver.execute_script(script, *args)

    def mark(self):
        return len(self.js('return window.events'))

    def wait(self, kind, since, timeout=15, where=lambda d: True):
        def found():
            return next((event for event in self.js('return window.events')[since:]
                         if event['type'] == kind and where(event['detail'])), None)

        def failure():
            console = [entry['message'] for entry in self.driver.get_log('browser')][-5:]
            return (f'{self.name}: no {kind} within {timeout}s; saw {self.js("return window.events")[since:]};'
                    f' console: {console}')

        return wait_for(found, timeout, failure)['detail']

    def do(self, script, event, *args, where=lambda d: True):
        """Runs an API call and waits for the event it promises; a matching *:error fails the run."""
        since = self.mark()
        self.js(script, *args)
        detail = self.wait(event, since, where=where)
        errors = [e for e in self.js('return window.events')[since:] if e['type'].endswith(':error')]
        if errors:
            raise SystemExit(f'{self.name}: {script} → {errors}')
        return detail

    def show(self, title, value):
        print(f'[{self.name}] {title}: {json.dumps(value, ensure_ascii=False, sort_keys=True)}')


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('kandy_js')
    parser.add_argument('port', type=int)
    parser.add_argument('--second-port', type=int)
    parser.add_argument('--password', default='secret')
    args = parser.parse_args()
    origin = f'http://127.0.0.1:{serve_page(args.kandy_js, PAGE)}/'
    second = args.second_port or args.port

    def url(user, port, force=True):
        return origin + f'?port={port}&user={user}&password={args.password}' + ('' if force else '&force=0')

    alice = Page('alice', url('alice@example.com', args.port))
    bob = Page('bob', url('bob@example.com', second))
    pages = [alice, bob]
    try:
        for page in pages:
            page.wait('subscription:change', 0, where=lambda d: True)
            wait_for(lambda: page.js('return kandy.services.getSubscriptions().subscribed.length'), 15,
                     lambda: f'{page.name} did not subscribe')

        # The address book. Kandy.js 4.20 announces an add with contacts:change, not the contacts:new it documents.
        alice.do("kandy.contacts.add({contactId: 'bob', primaryContact: 'bob@example.com', firstName: 'Bob',"
                 " lastName: 'Ørsted', emailAddress: '', friendStatus: true})", 'contacts:change')
        alice.do("kandy.contacts.add({contactId: 'carol', primaryContact: 'carol@example.com', firstName: 'Carol'})",
                 'contacts:change')
        alice.do("kandy.contacts.update({contactId: 'carol', primaryContact: 'carol@example.com', firstName: 'Carol',"
                 " mobilePhone: '+1 555 0199'})", 'contacts:change')
        alice.do("kandy.contacts.refresh()", 'contacts:change')
        alice.show('contacts after add, add, update, refresh', alice.js('return kandy.contacts.getAll()'))
        alice.do("kandy.contacts.fetch('carol')", 'contacts:change')
        alice.show("contacts.get('carol') after fetch", alice.js("return kandy.contacts.get('carol')"))
        if args.second_port:
            # A second page of alice's that does not log the first out (its subscribe may meet the
            # session limit; the address book needs no subscription).
            other = Page('alice on the second node', url('alice@example.com', second, force=False))
            pages.append(other)
            other.wait('subscription:change', 0)
            other.do("kandy.contacts.refresh()", 'contacts:change')
            other.show('contacts listed through the second node', other.js('return kandy.contacts.getAll()'))
        alice.do("kandy.contacts.remove('carol')", 'contacts:change')
        alice.do("kandy.contacts.refresh()", 'contacts:change')
        alice.show('contacts after remove and refresh', alice.js('return kandy.contacts.getAll()'))
        since = alice.mark()
        alice.js("kandy.contacts.add({contactId: 'bob', primaryContact: 'bob@example.com'})")
        alice.show('adding bob again', alice.wait('contacts:error', since))

        # The directory, by each search type Kandy.js knows.
        for filters in [{'firstName': 'ali'}, {'lastName': 'ABERG'}, {'name': 'bob ors'}, {'phoneNumber': '555 0100'},
                        {'userName': 'bob@'}, {'first_name': 'BO'}, {'last_name': 'ørs'}]:
            found = alice.do('kandy.user.search(arguments[0])', 'directory:change', filters)
            results = found.get('results')
            users = results.get('users', []) if isinstance(results, dict) else results or []
            alice.show(f'search {json.dumps(filters, ensure_ascii=False)}', [u.get('userId') for u in users])
        alice.do("kandy.user.fetch('bob@example.com')", 'users:change')
        alice.show("user.get('bob@example.com')", alice.js("return kandy.user.get('bob@example.com')"))
        alice.do('kandy.user.fetchSelfInfo()', 'users:change')
        alice.show('fetchSelfInfo → user.get(self)', alice.js("return kandy.user.get('alice@example.com')"))

        # A call, then the history on both sides.
        since_bob = bob.mark()
        call_id = alice.js("return kandy.call.make('bob@example.com', {audio: true, video: false})")
        bob_id = bob.wait('call:receive', since_bob)['callId']
        since = alice.mark()
        bob.js("kandy.call.answer(arguments[0], {audio: true, video: false})", bob_id)
        alice.wait('call:stateChange', since, where=lambda d: d.get('callId') == call_id
                   and alice.js('return kandy.call.getById(arguments[0]).state', call_id) == 'Connected')
        time.sleep(1.5)
        alice.js('kandy.call.end(arguments[0])', call_id)
        bob.wait('call:stateChange', since_bob, where=lambda d: d.get('callId') == bob_id
                 and bob.js('return kandy.call.getById(arguments[0]).state', bob_id) == 'Ended')
        for page in (alice, bob):
            page.do('kandy.call.history.fetch()', 'callHistory:change')
            logs = page.js('return kandy.call.history.get()')
            server = [l for l in logs if l.get('resourceLocation')]
            page.show('call history (platform entries)', [
                {k: l.get(k) for k in ('direction', 'disposition', 'duration', 'remoteParticipant', 'recordId')}
                for l in server])
        record = [l for l in alice.js('return kandy.call.history.get()') if l.get('resourceLocation')][0]['recordId']
        alice.do('kandy.call.history.remove(arguments[0])', 'callHistory:change', record)
        # Kandy.js 4.20's reducer turns the cached logs into booleans on a removal, after which its
        # fetch saga dies on them: a new page reads what the platform kept.
        alice.show('call.history.get() after remove (Kandy.js)', alice.js('return kandy.call.history.get()'))
        fresh = Page('alice, new page', url('alice@example.com', args.port))
        pages.append(fresh)
        fresh.wait('subscription:change', 0)
        fresh.do('kandy.call.history.fetch()', 'callHistory:change')
        fresh.show('platform entries after remove',
                   [l['recordId'] for l in fresh.js('return kandy.call.history.get()') if l.get('resourceLocation')])
        bob.do('kandy.call.history.clear()', 'callHistory:change')
        bob.do('kandy.call.history.fetch()', 'callHistory:change')
        bob.show('platform entries after clear and fetch',
                 [l['recordId'] for l in bob.js('return kandy.call.history.get()')
                  if isinstance(l, dict) and l.get('resourceLocation')])
        print('OK')
    finally:
        for page in pages:
            page.driver.quit()


if __name__ == '__main__':
    main()
