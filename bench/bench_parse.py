"""Benchmark parse_message against the modern-API baseline on a realistic corpus.

    .venv/bin/python bench/bench_parse.py -n 2000            # figures for the report
    .venv/bin/python bench/bench_parse.py -n 2000 --profile  # where parse_message spends time

The corpus comes from tests/servers/messages.py (log-normal sizes, median ~8 KB, ~12 % with a
10 KB-2 MB attachment), cached on disk between runs. Measured, in the same process and run:
  (a) salesinbox.core.parsing.message_parser.parse_message (compat32 email API + our decoding);
  (b) baseline: email.message_from_bytes(raw, policy=email.policy.default) and the same fields
      through the modern API (headerregistry, get_body, iter_attachments);
  (c) the floor: compat32 MIME parsing alone, no field extraction.
Each is run --rounds times; the median round is reported, for all messages and for those
without attachments (the ~8 KB typical message).
"""

from __future__ import annotations

import argparse
import cProfile
import email
import email.policy
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from email.feedparser import BytesFeedParser
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from salesinbox.core.parsing.message_parser import parse_message  # noqa: E402
from tests.servers.messages import cached_messages  # noqa: E402


def modern_api(raw: bytes) -> dict[str, object]:
    """The fields parse_message returns, read the way the email docs recommend."""
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    fields: dict[str, object] = {
        "message_id": msg["message-id"], "in_reply_to": msg["in-reply-to"],
        "references": msg["references"], "subject": str(msg["subject"] or ""),
    }
    for name in ("from", "to", "cc", "bcc", "reply-to"):
        header = msg[name]
        fields[name] = [(a.display_name, a.addr_spec) for a in header.addresses] if header else []
    date = msg["date"]
    fields["date"] = date.datetime if date is not None else None
    text = msg.get_body(preferencelist=("plain",))
    html = msg.get_body(preferencelist=("html",))
    fields["text"] = text.get_content() if text is not None else ""
    fields["html"] = html.get_content() if html is not None else ""
    fields["attachments"] = [
        (part.get_filename(), part.get_content_type(), len(part.get_payload(decode=True) or b""),
         part["content-id"]) for part in msg.iter_attachments()]
    return fields


def compat32_floor(raw: bytes) -> object:
    parser = BytesFeedParser()  # compat32, as parse_message uses it
    parser.feed(raw)
    return parser.close()


def measure(fn: Callable[[bytes], object], corpus: list[bytes], rounds: int) -> dict[str, float]:
    """Median round of ``rounds``: total seconds, mean and median ms per message, errors."""
    results = []
    for _ in range(rounds):
        times, errors = [], 0
        for raw in corpus:
            start = time.perf_counter()
            try:
                fn(raw)
            except Exception:  # noqa: BLE001 - the benchmark counts failures, whatever they are
                errors += 1
            times.append(time.perf_counter() - start)
        results.append((sum(times), statistics.median(times), errors))
    total, median, errors = sorted(results)[len(results) // 2]
    return {"msg_s": len(corpus) / total, "mean_ms": total / len(corpus) * 1e3,
            "median_ms": median * 1e3, "errors": errors}


def report(label: str, corpus: list[bytes], rounds: int) -> None:
    sizes = sorted(len(m) for m in corpus)
    print(f"\n{label}: {len(corpus)} messages, median {sizes[len(sizes) // 2] / 1024:.1f} KB, "
          f"mean {sum(sizes) / len(sizes) / 1024:.1f} KB")
    rows = {
        "(a) parse_message (compat32)": measure(parse_message, corpus, rounds),
        "(b) policy.default + modern API": measure(modern_api, corpus, rounds),
        "(c) compat32 MIME parse only": measure(compat32_floor, corpus, rounds),
    }
    for name, row in rows.items():
        errors = f"  ({row['errors']} raised)" if row["errors"] else ""
        print(f"  {name:34} {row['msg_s']:8.0f} msg/s  {row['mean_ms']:6.3f} ms/msg mean  "
              f"{row['median_ms']:6.3f} ms median{errors}")
    a, b, c = rows.values()
    print(f"  ratio (a)/(b): {a['msg_s'] / b['msg_s']:.1f}x faster; "
          f"MIME parsing alone is {c['mean_ms'] / a['mean_ms']:.0%} of (a)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="messages in the corpus")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cache-dir",
                        default=str(Path(tempfile.gettempdir()) / "salesinbox-bench"))
    parser.add_argument("--profile", action="store_true", help="cProfile parse_message instead")
    args = parser.parse_args()

    corpus = cached_messages(args.n, args.seed, cache_dir=args.cache_dir)
    if args.profile:
        profile = cProfile.Profile()
        profile.runcall(lambda: [parse_message(m) for m in corpus])
        pstats.Stats(profile).sort_stats("tottime").print_stats(25)
        return
    warned = sum(1 for m in corpus if parse_message(m).warnings)
    print(f"python {sys.version.split()[0]}; {warned} of {len(corpus)} messages gave warnings")
    report("all messages", corpus, args.rounds)
    report("messages without attachments", [m for m in corpus if b"filename=" not in m],
           args.rounds)


if __name__ == "__main__":
    main()
