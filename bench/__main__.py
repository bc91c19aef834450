"""Benchmark of QUALITY.md "Performance": services mode as production runs it, every figure a same-run ratio.

    python -m bench [--quick] [--out bench/results/latest.md]

Creates a fresh PostgreSQL database and uses an empty Redis DB, runs `flask db upgrade`, starts fake Gemini
(fixed latency), gunicorn with gunicorn.conf.py (the app, the app with its list cache off, and the floor app),
and the Huey consumer (`flask worker`); drives HTTP with wrk. Everything is stopped and dropped at the end,
on error and on Ctrl-C too.
"""
from __future__ import annotations

import argparse
import shutil
import signal
import sys
import time
import traceback
from pathlib import Path

from bench import figures
from bench import seed as seeding
from bench.figures import Row, Settings
from bench.load import Generator, ensure_wrk
from bench.report import load_average, machine, render
from bench.services import Stack


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="short runs, for a smoke check (~1.5 min)")
    parser.add_argument("--out", help="also write the markdown table to this file")
    parser.add_argument("--web-workers", type=int, default=2, help="WEB_CONCURRENCY (default 2)")
    parser.add_argument("--threads", type=int, default=8, help="GUNICORN_THREADS (default 8)")
    parser.add_argument("--consumer-threads", type=int, default=8, help="W: `flask worker -w W` (default 8)")
    parser.add_argument("--latency", type=float, default=0.2, help="L: fake Gemini latency in seconds (default 0.2)")
    parser.add_argument("--seconds", type=float, help="seconds of load per HTTP figure, split over the rounds "
                                                      "(default 12 in 4 rounds; quick 4 in 2)")
    parser.add_argument("--load", choices=("auto", "wrk", "python"), default="auto",
                        help="load generator: wrk (installed with apt-get when missing), or the Python fallback")
    parser.add_argument("--no-streams", action="store_true", help="skip the extra SSE figures")
    parser.add_argument("--redis-db", type=int, help="Redis DB number (default: the highest empty one <= 14)")
    return parser.parse_args(argv)


def settings(args: argparse.Namespace) -> Settings:
    """Durations and sizes for a full or a quick run."""
    return Settings(seconds=args.seconds or (4 if args.quick else 12), warmup=1 if args.quick else 2,
                    rounds=2 if args.quick else 4,
                    consumer_threads=args.consumer_threads, latency=args.latency,
                    saturation_factor=8 if args.quick else 20, steady_seconds=4 if args.quick else 15)


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
    s = settings(args)
    header = [f"Machine: {machine()}.",
              f"Load: {gen.name}. Web: gunicorn gunicorn.conf.py, {args.web_workers} workers x {args.threads} "
              f"threads (gthread), APP_ENV=production. Consumer: `flask worker -w {args.consumer_threads}`. "
              f"Fake Gemini L = {args.latency} s. HTTP figures: {s.rounds} interleaved rounds of {s.seconds / s.rounds:g} s, "
              f"ratios are medians of same-round ratios, each round opened and closed by the floor" +
              (" (--quick)." if args.quick else ".")]
    print("\n".join(header), flush=True)
    stack = Stack(web_workers=args.web_workers, web_threads=args.threads, latency=args.latency,
                  redis_db=args.redis_db)
    rows: list[Row] = []
    app, status, started, load_before = None, 0, time.monotonic(), load_average()
    try:
        stack.open()
        print(f"database {stack.dbname}, Redis DB {stack.redis_db}, logs in {stack.workdir}", flush=True)
        app = seeding.make_app()
        data = seeding.seed(app)
        floor = stack.start_web("floor", "bench.floor_app:app")
        web = stack.start_web("web")
        # The app's switch: CHATROOM_CACHE_TTL=0 turns the list cache off (caching.cached_chatroom_list).
        nocache = stack.start_web("web-cache-off", CHATROOM_CACHE_TTL="0", CHATROOM_CACHE="off")
        import redis
        redis.Redis.from_url(stack.redis_url).set("bench:floor", "x" * 64)

        report(rows, figures.http_figures(gen, floor, web, nocache, data.reader_token, data.writers, s))
        seeding.clear_backlog(app)
        consumer = stack.start_consumer(args.consumer_threads)
        report(rows, figures.reply_figures(app, web, data.writers, s))
        if not args.no_streams:
            report(rows, figures.stream_rows(web, data.writers[0], s, samples=10 if args.quick else 20,
                                             concurrency=args.threads * args.web_workers))
        report(rows, figures.memory_rows([web, nocache], consumer, floor))
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
    if status == 0:
        shutil.rmtree(stack.workdir, ignore_errors=True)
    else:
        print(f"process logs kept in {stack.workdir}", file=sys.stderr)
    if not rows:
        return status
    table = render(rows, header)
    print("\n" + table)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(table + "\n")
    return status


def report(rows: list[Row], new: list[Row]) -> None:
    """Keep rows and show them as they come."""
    for row in new:
        verdict = "" if row.met is None else (" [met]" if row.met else " [NOT met]")
        print(f"  {row.figure}: {row.measured} -> {row.ratio}{verdict}", flush=True)
    rows.extend(new)


if __name__ == "__main__":
    sys.exit(main())
