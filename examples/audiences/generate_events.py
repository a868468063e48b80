"""Generate a deterministic month of product events (sessions, features, onboarding, campaigns, orders).

    pip install ".[audiences]"
    python examples/audiences/generate_events.py --users 2000 --out events.jsonl
    segment-lite audiences preview examples/audiences/definitions.yaml events.jsonl --now 2024-06-01T00:00:00Z

The month ends at ``--end`` (default 2024-06-01T00:00:00Z); see README.md beside this file.

The same arguments always write the same bytes. ``--touch-fraction F --after-day``
writes, instead, one more day of activity for a fraction F of the users (the day
after ``--end``), to show what a later sync sends.
"""

from __future__ import annotations

import argparse
import datetime
import json
import random
import sys
from typing import Any, TextIO

FEATURES = ("dashboard", "reports", "export", "sharing", "alerts", "api")
CHANNELS = (
    ("google", "cpc"),
    ("facebook", "social"),
    ("email", "email"),
    ("newsletter", "email"),
    ("bing", "cpc"),
)
PLANS = ("free", "team", "business", "enterprise")
PAGES = ("/", "/pricing", "/docs", "/blog", "/features")


def _iso(moment: datetime.datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


class Writer:
    """Writes events as JSON Lines with sequential messageIds."""

    def __init__(self, out: TextIO, prefix: str) -> None:
        self.out = out
        self.prefix = prefix
        self.count = 0

    def emit(self, kind: str, user: str, at: datetime.datetime, **fields: Any) -> None:
        self.count += 1
        message = {
            "type": kind,
            "messageId": f"{self.prefix}-{self.count}",
            "userId": user,
            "timestamp": _iso(at),
        }
        message.update(fields)
        self.out.write(json.dumps(message, separators=(",", ":")))
        self.out.write("\n")


def _user_day(w: Writer, rng: random.Random, user: str, day: datetime.datetime, activity: float) -> None:
    """One day of a user: maybe a campaign visit, sessions with features, maybe an order."""
    touched = False
    if rng.random() < 0.12:
        source, medium = CHANNELS[rng.randrange(len(CHANNELS))]
        at = day + datetime.timedelta(seconds=rng.randrange(0, 40000))
        w.emit(
            "page",
            user,
            at,
            name="Landing",
            properties={"path": "/lp", "plan": PLANS[rng.randrange(4)]},
            context={"campaign": {"source": source, "medium": medium, "name": "spring"}},
        )
        touched = True
    sessions = 1 if rng.random() < activity else 0
    for _ in range(sessions):
        at = day + datetime.timedelta(seconds=rng.randrange(40000, 80000))
        w.emit("track", user, at, event="Session Started", properties={"source": "web"})
        for _ in range(rng.randrange(0, 4)):
            at += datetime.timedelta(seconds=rng.randrange(10, 600))
            weights = (5, 4, 1, 2, 2, 1)
            feature = rng.choices(FEATURES, weights)[0]
            w.emit("track", user, at, event="Feature Used", properties={"feature_name": feature})
        if rng.random() < 0.3:
            at += datetime.timedelta(seconds=rng.randrange(10, 600))
            w.emit(
                "page",
                user,
                at,
                name="Pricing",
                properties={"path": PAGES[rng.randrange(5)], "plan": PLANS[rng.randrange(4)]},
            )
    if (touched or sessions) and rng.random() < 0.04:
        at = day + datetime.timedelta(seconds=rng.randrange(80000, 86000))
        w.emit(
            "track",
            user,
            at,
            event="Order Completed",
            properties={"revenue": round(rng.uniform(5, 300), 2), "currency": "USD"},
        )


def generate(users: int, end: datetime.datetime, days: int, seed: int, out: TextIO) -> int:
    """Write ``days`` days of events ending at ``end`` for ``users`` users; returns the event count."""
    rng = random.Random(seed)
    w = Writer(out, f"gen{seed}")
    start = end - datetime.timedelta(days=days)
    for n in range(users):
        user = f"user-{n:06d}"
        created = end - datetime.timedelta(days=rng.uniform(1, 120))
        activity = rng.choice((0.05, 0.15, 0.35, 0.6))
        plan = rng.choice(PLANS)
        first = max(start, created)
        w.emit(
            "identify",
            user,
            first,
            traits={"created_at": _iso(created), "plan": plan, "email": f"{user}@example.com"},
        )
        if created > start and rng.random() < 0.7:
            w.emit("track", user, created + datetime.timedelta(hours=2), event="Onboarding Completed")
        # a dormant fifth stops partway through the month
        stop = end - datetime.timedelta(days=rng.uniform(8, 20)) if rng.random() < 0.2 else end
        day = first.replace(hour=0, minute=0, second=0, microsecond=0)
        while day < stop - datetime.timedelta(days=1):
            if day >= first:
                _user_day(w, rng, user, day, activity)
            day += datetime.timedelta(days=1)
    return w.count


def generate_day_after(users: int, end: datetime.datetime, fraction: float, seed: int, out: TextIO) -> int:
    """Write a day of activity, the day before ``end``, for about ``fraction`` of the users."""
    rng = random.Random(seed + 1)
    w = Writer(out, f"gen{seed}-after")
    day = end - datetime.timedelta(days=1)
    for n in range(users):
        if rng.random() < fraction:
            user = f"user-{n:06d}"
            at = day + datetime.timedelta(seconds=rng.randrange(0, 3600))
            w.emit("track", user, at, event="Session Started", properties={"source": "web"})
            w.emit(
                "track",
                user,
                at + datetime.timedelta(seconds=30),
                event="Feature Used",
                properties={"feature_name": "export"},
            )
    return w.count


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--users", type=int, default=2000)
    parser.add_argument("--days", type=int, default=30)
    parser.add_argument("--end", default="2024-06-01T00:00:00Z", help="the moment the month ends (UTC)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", default="-")
    parser.add_argument(
        "--touch-fraction", type=float, help="write only a day of activity for this fraction of users"
    )
    args = parser.parse_args(argv)
    end = datetime.datetime.fromisoformat(args.end.replace("Z", "+00:00")).replace(tzinfo=None)
    out = sys.stdout if args.out == "-" else open(args.out, "w", encoding="utf-8")  # noqa: SIM115
    try:
        if args.touch_fraction is not None:
            n = generate_day_after(args.users, end, args.touch_fraction, args.seed, out)
        else:
            n = generate(args.users, end, args.days, args.seed, out)
    finally:
        if out is not sys.stdout:
            out.close()
    print(f"{n} events", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
