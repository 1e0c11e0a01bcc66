"""What the Kandy.js browser harnesses share: a page server and headless Chromium with fake media."""
import contextlib, http.server, os, re, socketserver, subprocess, tempfile, threading, time
from selenium import webdriver
from selenium.webdriver.chrome.options import Options
from selenium.webdriver.chrome.service import Service


def serve_page(kandy_js, page):
    """Serves `page` (HTML) at / and the file `kandy_js` at /kandy.js on a free loopback port; returns the port."""
    body, script = page.encode(), open(kandy_js, 'rb').read()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            data, kind = (script, 'application/javascript') if self.path.startswith('/kandy.js') else (body, 'text/html')
            self.send_response(200)
            self.send_header('Content-Type', kind)
            self.send_header('Content-Length', str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = socketserver.ThreadingTCPServer(('127.0.0.1', 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server.server_address[1]


def wait_for(check, seconds, failure, every=0.05):
    """Asks `check()` every `every` s until it returns something true, and returns that. A page says
    nothing when its state changes, so the harnesses ask; after `seconds` the run ends with
    `failure()`, called then, so that it reports what the page shows at that moment."""
    deadline = time.monotonic() + seconds
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() > deadline:
            raise SystemExit(failure())
        time.sleep(every)


def browser():
    """Headless Chromium with fake camera and microphone, any certificate accepted, console kept."""
    options = Options()
    for flag in ['--headless=new', '--no-sandbox', '--ignore-certificate-errors', '--use-fake-device-for-media-stream',
                 '--use-fake-ui-for-media-stream', '--autoplay-policy=no-user-gesture-required',
                 '--disable-dev-shm-usage']:
        options.add_argument(flag)
    options.binary_location = '/usr/bin/chromium'
    options.set_capability('goog:loggingPrefs', {'browser': 'ALL'})
    return webdriver.Chrome(options=options, service=Service('/usr/bin/chromedriver'))


@contextlib.contextmanager
def dev_tls_node(kandy_link, users, password):
    """A `kandy-link serve --dev-tls` node in a new folder with `users` (all with `password`); yields
    (port, folder). The folder holds the development certificate, dev-tls-certificate.pem."""
    binary = os.path.abspath(kandy_link)
    with tempfile.TemporaryDirectory() as folder:
        database = os.path.join(folder, 'platform.sqlite')
        for user in users:
            subprocess.run([binary, 'users', 'add', user, '--password-stdin', '--database', database],
                           input=password + '\n', text=True, check=True, capture_output=True)
        node = subprocess.Popen([binary, 'serve', '--dev-tls', '--database', database, '--port', '0',
                                 '--log-level', 'error'], cwd=folder, stdout=subprocess.PIPE, text=True)
        try:
            port = None
            for line in node.stdout:
                found = re.search(r'listening on https://127\.0\.0\.1:(\d+)', line)
                if found:
                    port = int(found.group(1))
                    break
            if port is None:
                raise SystemExit('kandy-link serve exited before listening')
            yield port, folder
        finally:
            node.terminate()
            node.wait()
