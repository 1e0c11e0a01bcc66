"""What the Kandy.js browser harnesses share: a page server and headless Chromium with fake media."""
import http.server, socketserver, threading
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
