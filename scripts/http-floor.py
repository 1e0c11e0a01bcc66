#!/usr/bin/env python3
"""Server CPU per `GET /health` at saturation: a `kandy-link serve --plaintext` node, a bare
SwiftNIO HTTP/1.1 server (Benchmarks' HTTPFloor) and nginx (`return 200`), measured in one run.

Each server runs alone on CPU 0 with one event loop (one nginx worker); wrk runs on CPU 1 with one
thread and 16 keep-alive connections for DURATION seconds. A server's CPU is its processes' user +
system time from /proc, divided by the requests wrk completed. What the node costs above HTTPFloor
is what its HTTP layer (Hummingbird, an async channel per connection) adds; HTTPFloor over nginx
is SwiftNIO's own. Needs `nginx` and `wrk` (Debian packages).

usage: http-floor.py KANDY_LINK HTTP_FLOOR [--duration S] [--rounds N]
  KANDY_LINK: the kandy-link binary; HTTP_FLOOR: the HTTPFloor binary
  (cd Benchmarks && swift build -c release --product HTTPFloor). Release builds, both.
"""
import argparse, os, re, shutil, signal, socket, subprocess, tempfile, time

NGINX_CONF = """worker_processes 1;
daemon off;
pid {folder}/nginx.pid;
error_log {folder}/error.log;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    server {{
        listen 127.0.0.1:{port};
        location /health {{ default_type application/json; return 200 '{{"statusCode":0,"reason":"Serving."}}'; }}
    }}
}}
"""


def free_port():
    with socket.socket() as probe:
        probe.bind(('127.0.0.1', 0))
        return probe.getsockname()[1]


def wait_for(port, process, seconds=30):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f'the server on port {port} exited early ({process.returncode})')
        try:
            with socket.create_connection(('127.0.0.1', port), timeout=1):
                return
        except OSError:
            time.sleep(0.05)
    raise SystemExit(f'nothing listens on port {port} after {seconds} s')


def cpu_seconds(pids):
    """User + system CPU time of the processes, in seconds."""
    ticks = os.sysconf('SC_CLK_TCK')
    total = 0
    for pid in pids:
        with open(f'/proc/{pid}/stat') as stat:
            fields = stat.read().rsplit(')', 1)[1].split()
        total += int(fields[11]) + int(fields[12])
    return total / ticks


def family(pid):
    children = subprocess.run(['pgrep', '-P', str(pid)], capture_output=True, text=True).stdout.split()
    return [pid] + [int(child) for child in children]


def measure(name, port, pids, duration):
    before = cpu_seconds(pids)
    out = subprocess.run(
        ['taskset', '-c', '1', 'wrk', '-t1', '-c16', f'-d{duration}s', f'http://127.0.0.1:{port}/health'],
        capture_output=True, text=True, check=True).stdout
    after = cpu_seconds(pids)
    requests = int(re.search(r'(\d+) requests in', out).group(1))
    errors = re.search(r'Non-2xx or 3xx responses: (\d+)', out)
    if errors:
        raise SystemExit(f'{name}: {errors.group(1)} responses were not 200')
    return requests / duration, (after - before) / requests * 1e6


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument('kandy_link')
    parser.add_argument('http_floor')
    parser.add_argument('--duration', type=int, default=10)
    parser.add_argument('--rounds', type=int, default=2)
    args = parser.parse_args()
    for tool in ('nginx', 'wrk', 'taskset'):
        if not shutil.which(tool):
            raise SystemExit(f'{tool} is missing (apt-get install nginx wrk)')

    with tempfile.TemporaryDirectory() as folder:
        node_port, floor_port, nginx_port = free_port(), free_port(), free_port()
        with open(os.path.join(folder, 'nginx.conf'), 'w') as conf:
            conf.write(NGINX_CONF.format(folder=folder, port=nginx_port))
        quiet = subprocess.DEVNULL
        servers = [
            ('kandy-link', node_port, subprocess.Popen(
                ['taskset', '-c', '0', os.path.abspath(args.kandy_link), 'serve', '--plaintext',
                 '--port', str(node_port), '--database', os.path.join(folder, 'platform.sqlite')],
                stdout=quiet, stderr=quiet)),
            ('SwiftNIO', floor_port, subprocess.Popen(
                ['taskset', '-c', '0', os.path.abspath(args.http_floor), str(floor_port)], stdout=quiet, stderr=quiet)),
            ('nginx', nginx_port, subprocess.Popen(
                ['taskset', '-c', '0', 'nginx', '-c', os.path.join(folder, 'nginx.conf'), '-p', folder],
                stdout=quiet, stderr=quiet)),
        ]
        try:
            for _, port, process in servers:
                wait_for(port, process)
            print(f'GET /health at saturation, wrk -t1 -c16 -d{args.duration}s on CPU 1, each server on CPU 0')
            results = {name: [] for name, _, _ in servers}
            for _ in range(args.rounds):
                for name, port, process in servers:
                    rate, micros = measure(name, port, family(process.pid), args.duration)
                    results[name].append(micros)
                    print(f'  {name:<11} {rate:9.0f} requests/s  {micros:6.1f} µs of server CPU per request')
            for round_index in range(args.rounds):
                node, nio, nginx = (results[name][round_index] for name in ('kandy-link', 'SwiftNIO', 'nginx'))
                print(f'  round {round_index + 1}: kandy-link / SwiftNIO {node / nio:.2f} ×, '
                      f'SwiftNIO / nginx {nio / nginx:.2f} ×, kandy-link / nginx {node / nginx:.2f} ×')
        finally:
            for _, _, process in servers:
                process.send_signal(signal.SIGTERM)
            for _, _, process in servers:
                try:
                    process.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    process.kill()


if __name__ == '__main__':
    main()
