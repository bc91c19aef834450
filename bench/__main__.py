"""Benchmark of QUALITY.md "Performance": services mode as production runs it, every figure a same-run ratio.

    python -m bench [--quick] [--out bench/results/latest.md]

Creates a fresh PostgreSQL database and uses an empty Redis DB, runs `flask db upgrade`, starts gunicorn with
gunicorn.conf.py and the Huey consumer (`flask worker`) with their production defaults (no worker or thread
overrides unless given below), and the fake Gemini.

First the conversation rows (the headline): an asyncio client (bench/talk.py) holds simulated users as coroutines
on one event loop; the fake Gemini (bench/fake_gemini.py, its own process) answers at a real model's pace
(first chunk after 1 s, then 8 more 0.3 s apart). Then the guards: the earlier HTTP figures with wrk against the
floor app and the app with its list cache off, and the reply figures at L = 0.2 s. Everything is stopped and
dropped at the end, on error and on Ctrl-C too.
"""
from __future__ import annotations

import argparse
import dataclasses
import resource
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from bench import conversations, figures
from bench import seed as seeding
from bench.figures import Row, Settings
from bench.load import Generator, ensure_wrk
from bench.report import load_average, machine, render
from bench.services import Stack


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true",
                        help="scaled down, for a smoke check (~3 min): 200 conversations at 50/s, a burst of 100, "
                             "1,000 open streams, short search and HTTP runs")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--web-workers", type=int, help="override WEB_CONCURRENCY (default: gunicorn.conf.py's)")
    parser.add_argument("--threads", type=int, help="override GUNICORN_THREADS (default: gunicorn.conf.py's)")
    parser.add_argument("--web-worker-class", choices=("gevent", "gthread"),
                        help="override GUNICORN_WORKER_CLASS, to measure the thread model beside the default gevent")
    parser.add_argument("--consumer-type", choices=("greenlet", "thread"),
                        help="override WORKER_TYPE, the consumer's workers (default greenlet)")
    parser.add_argument("--consumer-threads", type=int,
                        help="override the consumer's workers: `flask worker -w W` (default: bare `flask worker`)")
    parser.add_argument("--latency", type=float, default=0.2,
                        help="L: fake Gemini latency of the guard figures, in seconds (default 0.2)")
    parser.add_argument("--seconds", type=float, help="seconds of load per HTTP figure, split over the rounds "
                                                      "(default 12 in 4 rounds; quick 4 in 2)")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator of the HTTP guards: wrk (installed with apt-get when missing), or the "
                             "Python fallback")
    parser.add_argument("--no-streams", action="store_true", help="skip the extra SSE figures of the guards")
    parser.add_argument("--redis-db", type=int, help="Redis DB number (default: the highest empty one <= 14)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the servers' logs (kept anyway on failure)")
    group = parser.add_argument_group("conversation rows")
    group.add_argument("--no-conversations", action="store_true", help="skip the conversation rows")
    group.add_argument("--no-guards", action="store_true", help="skip the guard rows")
    group.add_argument("--conversations", type=int, help="C1: conversations (default 1000; quick 200)")
    group.add_argument("--rate", type=float, help="C1: arrivals per second (default 100; quick 50)")
    group.add_argument("--burst", type=int, help="C3: conversations started within one second (default 300; quick 100)")
    group.add_argument("--open-streams", type=int, help="C4: streams held open (default 5000; quick 1000)")
    group.add_argument("--capacity-rates", help="C2: comma-separated rates the search may try "
                                                "(default 1,2,5,10,20,50,100,150,200,300,400)")
    group.add_argument("--capacity-seconds", type=float, help="C2: seconds of arrivals per search run "
                                                              "(default 10; quick 4)")
    group.add_argument("--convo-timeout", type=float, help="seconds after which a conversation counts as failed "
                                                           "(default 30; quick 20)")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    """Durations and sizes for a full or a quick run."""
    return Settings(seconds=args.seconds or (4 if args.quick else 12), warmup=1 if args.quick else 2,
                    rounds=2 if args.quick else 4,
                    consumer_threads=args.consumer_threads or consumer_workers(), latency=args.latency,
                    saturation_factor=8 if args.quick else 20, steady_seconds=4 if args.quick else 15)


def convo_settings(args: argparse.Namespace) -> conversations.ConvoSettings:
    """Sizes of the conversation rows: QUALITY.md's, scaled down by --quick, or as given."""
    c = conversations.quick_settings() if args.quick else conversations.ConvoSettings()
    for name, attr in (("conversations", "conversations"), ("rate", "rate"), ("burst", "burst"),
                       ("open_streams", "open_streams"), ("capacity_seconds", "capacity_seconds"),
                       ("convo_timeout", "timeout")):
        if getattr(args, name) is not None:
            setattr(c, attr, getattr(args, name))
    if args.capacity_rates:
        c.capacity_rates = tuple(float(x) for x in args.capacity_rates.split(","))
    return c


def consumer_workers() -> int:
    """W of the reply figures when not given: the consumer's default (WORKER_CONCURRENCY)."""
    from gemini_backend.config import load_config
    return int(load_config()["WORKER_CONCURRENCY"])


def raise_open_files() -> str:
    """Thousands of client sockets here, thousands of server sockets in the children: lift the soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = hard if hard != resource.RLIM_INFINITY else 65536
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))
    return f"open files limit {resource.getrlimit(resource.RLIMIT_NOFILE)[0]}"


def _terminate(signum, frame):
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run every figure, print the table, clean up whatever happens."""
    args = parse_args(argv)
    for signum in (signal.SIGINT, signal.SIGTERM):  # also when started in the background with SIGINT ignored
        signal.signal(signum, _terminate)
    wrk = None if args.load == "python" else ensure_wrk()
    if args.load == "wrk" and wrk is None:
        print("wrk is not installed and could not be installed (apt-get install -y wrk)", file=sys.stderr)
        return 2
    gen = Generator(wrk)
    overrides = ", ".join(f"{name} {value}" for name, value in (("--web-workers", args.web_workers),
                                                                 ("--threads", args.threads),
                                                                 ("--web-worker-class", args.web_worker_class),
                                                                 ("--consumer-type", args.consumer_type),
                                                                 ("--consumer-threads", args.consumer_threads))
                          if value is not None)
    header = [f"Machine: {machine()}; {raise_open_files()}.",
              "Servers: `gunicorn -c gunicorn.conf.py wsgi:app` and `flask worker`, APP_ENV=production, "
              + (f"with overrides {overrides}." if overrides else "production defaults (no worker or thread overrides).")]
    print("\n".join(header), flush=True)
    stack = Stack(web_workers=args.web_workers, web_threads=args.threads, web_worker_class=args.web_worker_class,
                  consumer_type=args.consumer_type, latency=args.latency, redis_db=args.redis_db)
    rows: list[Row] = []
    app, status, started, load_before = None, 0, time.monotonic(), load_average()
    try:
        stack.open()
        s, c = settings(args), convo_settings(args)
        print(f"database {stack.dbname}, Redis DB {stack.redis_db}, logs in {stack.workdir}", flush=True)
        app = seeding.make_app()
        data = seeding.seed(app)
        if not args.no_conversations:
            header.append(f"Conversation rows: asyncio client (aiohttp, one event loop, this process); fake Gemini "
                          f"(bench/fake_gemini.py, asyncio, own process) F = {conversations.F:g} s, "
                          f"{conversations.CHUNKS} chunks {conversations.GAP:g} s apart; a conversation not done "
                          f"within {c.timeout:g} s is an error" + (" (--quick: scaled down)." if args.quick else "."))
            print(header[-1], flush=True)
            rows += conversations.conversation_rows(stack, app, data.reader_token, c, args.consumer_threads,
                                                    lambda new: report([], new))
        if not args.no_guards:
            header.append(f"Guards: load {gen.name}; fake Gemini L = {args.latency} s; reply figures: W = the "
                          f"consumer's workers. HTTP figures: {s.rounds} interleaved rounds of "
                          f"{s.seconds / s.rounds:g} s, ratios are medians of same-round ratios, each round opened "
                          f"and closed by the floor" + (" (--quick)." if args.quick else "."))
            print(header[-1], flush=True)
            rows += guard_rows(stack, app, data, gen, s, args)
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up", file=sys.stderr)
        status = 130
    except Exception:
        traceback.print_exc()
        for proc in stack.procs:
            print(f"--- last lines of {proc.name} ---\n{proc.tail()}", file=sys.stderr)
        status = 1
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the cleanup short
            signal.signal(signum, signal.SIG_IGN)
        if app is not None:
            try:
                seeding.dispose(app)
            except Exception:
                pass
        stack.close()
    header.append(f"Run took {time.monotonic() - started:.0f} s; load average before {load_before}, after "
                  f"{load_average()} (other work on the machine skews absolute figures; ratios less so).")
    if status == 0 and not args.keep_logs:
        shutil.rmtree(stack.workdir, ignore_errors=True)
    else:
        print(f"process logs kept in {stack.workdir}", file=sys.stderr if status else sys.stdout)
    if not rows:
        return status
    table = render(rows, header)
    print("\n" + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
    return status


def guard_rows(stack: Stack, app, data: seeding.Seed, gen: Generator, s: Settings,
               args: argparse.Namespace) -> list[Row]:
    """The earlier figures, which must not regress: HTTP against the floor, reply throughput and overhead."""
    rows: list[Row] = [Row("guards (the earlier goals; same-run references)", "-", "-", "-")]
    floor = stack.start_web("floor", "bench.floor_app:app")
    web = stack.start_web("web")
    # The app's switch: CHATROOM_CACHE_TTL=0 turns the list cache off (caching.cached_chatroom_list).
    nocache = stack.start_web("web-cache-off", CHATROOM_CACHE_TTL="0", CHATROOM_CACHE="off")
    import redis
    redis.Redis.from_url(stack.redis_url).set("bench:floor", "x" * 64)

    report(rows, figures.http_figures(gen, floor, web, nocache, data.reader_token, data.writers, s))
    seeding.clear_backlog(app)
    consumer = stack.start_consumer(args.consumer_threads)
    w = args.consumer_threads or conversations.consumer_concurrency(consumer) or s.consumer_threads
    s = dataclasses.replace(s, consumer_threads=w)
    report(rows, figures.reply_figures(app, web, data.writers, s))
    if not args.no_streams:
        report(rows, figures.stream_rows(web, data.writers[0], s, samples=10 if args.quick else 20, concurrency=32))
    report(rows, figures.memory_rows([web, nocache], consumer, floor))
    return rows


def report(rows: list[Row], new: list[Row]) -> None:
    """Keep rows and show them as they come."""
    for row in new:
        verdict = "" if row.met is None else (" [met]" if row.met else " [NOT met]")
        print(f"  {row.figure}: {row.measured} -> {row.ratio}{verdict}", flush=True)
    rows.extend(new)


if __name__ == "__main__":
    sys.exit(main())
