"""Realistic RFC 5322 messages for tests and benchmarks, built with the `email` package.

`build_message()` makes one message (bytes, CRLF line endings, as IMAP stores
them); `generate_messages()` makes a deterministic corpus whose sizes follow a
log-normal distribution (median about 8 KB, a minority with attachments), with
reply threads, non-ASCII subjects and names, and a few non-UTF-8 charsets.

Everything the `email` package would otherwise randomise (MIME boundaries,
Message-IDs) is derived from the inputs, so the same arguments give the same bytes.
"""

from __future__ import annotations

import hashlib
import math
import os
import random
import unicodedata
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage
from email.utils import format_datetime, make_msgid
from pathlib import Path

AddressLike = str | tuple[str, str] | Address


@dataclass(frozen=True)
class Attachment:
    """A file to attach: `content_type` is "maintype/subtype"."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


def _address(value: AddressLike) -> Address | str:
    if isinstance(value, tuple):
        name, addr = value
        return Address(display_name=name, addr_spec=addr)
    return value


def _addresses(values: AddressLike | Sequence[AddressLike]) -> list[Address | str]:
    if isinstance(values, (str, tuple, Address)):
        values = [values]
    return [_address(v) for v in values]


def _domain(sender: AddressLike) -> str:
    text = sender[1] if isinstance(sender, tuple) else str(sender)
    return text.rsplit("@", 1)[-1].strip("> ") or "example.test"


def build_message(
    *,
    from_: AddressLike = ("Alice Seller", "alice@sales.example.test"),
    to: AddressLike | Sequence[AddressLike] = ("Bob Buyer", "bob@customer.example.test"),
    cc: AddressLike | Sequence[AddressLike] = (),
    reply_to: AddressLike | None = None,
    subject: str = "Quote for your order",
    date: datetime | None = None,
    message_id: str | None = None,
    in_reply_to: str | None = None,
    references: Sequence[str] = (),
    text: str | None = "Hello,\n\nplease find the details below.\n\nRegards\n",
    html: str | None = None,
    attachments: Sequence[Attachment] = (),
    charset: str = "utf-8",
    cte: str | None = None,
    headers: Sequence[tuple[str, str]] = (),
) -> bytes:
    """Build one message and return its bytes (CRLF line endings).

    - Addresses: "Name <a@b>", "a@b", ("Name", "a@b") or an `Address`; non-ASCII
      display names and a non-ASCII `subject` are RFC 2047-encoded.
    - `text` and/or `html`: both give multipart/alternative; `attachments` wrap
      the body in multipart/mixed. `charset` and `cte` (e.g. "quoted-printable",
      "base64", "8bit") apply to the text parts.
    - `date` defaults to now (UTC), `message_id` to a fresh `make_msgid()`.
    - `headers`: extra (name, value) pairs, e.g. [("X-Mailer", "Outlook")].
    """
    if text is None and html is None and not attachments:
        text = ""
    msg = EmailMessage(policy=policy.default)
    msg["From"] = _address(from_)
    msg["To"] = _addresses(to)
    if cc:
        msg["Cc"] = _addresses(cc)
    if reply_to is not None:
        msg["Reply-To"] = _address(reply_to)
    msg["Subject"] = subject
    msg["Date"] = format_datetime(date or datetime.now(UTC))
    msg["Message-ID"] = message_id or make_msgid(domain=_domain(from_))
    if in_reply_to:
        msg["In-Reply-To"] = in_reply_to
    refs = list(references) or ([in_reply_to] if in_reply_to else [])
    if refs:
        msg["References"] = " ".join(refs)
    for name, value in headers:
        msg[name] = value

    if text is not None:
        msg.set_content(text, charset=charset, cte=cte)
        if html is not None:
            msg.add_alternative(html, subtype="html", charset=charset, cte=cte)
    elif html is not None:
        msg.set_content(html, subtype="html", charset=charset, cte=cte)
    for att in attachments:
        maintype, _, subtype = att.content_type.partition("/")
        msg.add_attachment(att.data, maintype=maintype, subtype=subtype or "octet-stream",
                           filename=att.filename)

    for part in msg.walk():  # add_alternative/add_attachment stamp it on every part
        if part is not msg:
            del part["MIME-Version"]
    # The email package picks boundaries with the global `random`: derive them instead.
    seed = hashlib.sha1(str(msg["Message-ID"]).encode()).hexdigest()[:20]
    for n, part in enumerate(p for p in msg.walk() if p.is_multipart()):
        part.set_boundary(f"=_{seed}_{n}")
    return msg.as_bytes(policy=policy.SMTP)


# --------------------------------------------------------------------------- corpus

_WORDS = (
    "the of and to a in for is on that with as we your our you this be are it will at "
    "by from have can please order quote price delivery invoice contract offer meeting "
    "call next week team proposal discount renewal licence licenses users support project "
    "timeline budget approval signed attached details update thanks regards follow up "
    "question shipment pallet warehouse payment terms net thirty days volume tier pilot "
    "rollout onboarding training account manager demo feedback schedule Tuesday Thursday "
    "morning afternoon confirm agenda minutes forecast quarter pipeline target region"
).split()
_FIRST = ["Alice", "Bruno", "Chloé", "Dmitri", "Emma", "Fatima", "Günther", "Hiro", "Inès",
          "José", "Kateřina", "Liam", "Mei", "Noah", "Olga", "Pierre", "Søren", "Zoë"]
_LAST = ["Martin", "Müller", "Nakamura", "García", "Rossi", "Novák", "Dubois", "Smith",
         "Łukasik", "O'Brien", "Jensen", "Schmidt", "Silva", "Kowalski"]
_COMPANIES = ["acme", "globex", "initech", "umbrella", "hooli", "stark", "wayne", "tyrell"]
_SUBJECTS = ["Quote for {n} licences", "Order #{n} delivery date", "Renewal {n}",
             "Meeting next week", "Invoice {n} overdue", "Pilot feedback",
             "Proposition commerciale n°{n}", "Angebot für Müller GmbH ({n})",
             "見積書の送付 {n}", "Contract draft v{n}", "Re: pricing question", "Demo follow-up"]
_ATTACH_TYPES = [("pdf", "application/pdf"), ("xlsx", "application/vnd.openxmlformats-"
                 "officedocument.spreadsheetml.sheet"), ("png", "image/png"),
                 ("docx", "application/vnd.openxmlformats-officedocument."
                 "wordprocessingml.document"), ("csv", "text/csv")]


def _make_pool(chars: int = 600_000) -> str:
    """A fixed block of wrapped, sentence-like prose that bodies are sliced from."""
    rng = random.Random(20261128)  # fixed: the pool is the same in every process
    paras, total = [], 0
    while total < chars:
        sentences = []
        for _ in range(rng.randint(1, 5)):
            words = rng.choices(_WORDS, k=rng.randint(6, 18))
            sentences.append(" ".join(words).capitalize() + ".")
        lines, cur = [], ""
        for word in " ".join(sentences).split(" "):
            if cur and len(cur) + len(word) + 1 > 72:  # wrap like mail clients do
                lines.append(cur)
                cur = word
            else:
                cur = f"{cur} {word}" if cur else word
        para = "\n".join(lines + [cur]) + "\n"
        paras.append(para)
        total += len(para) + 1
    return "\n".join(paras)


_POOL = ""


def _prose(rng: random.Random, size: int) -> str:
    """About `size` characters of prose, a deterministic slice of the pool."""
    global _POOL
    if not _POOL:
        _POOL = _make_pool()
    size = min(size, len(_POOL) // 2)
    start = _POOL.find("\n\n", rng.randrange(len(_POOL) - size)) + 2
    end = _POOL.rfind("\n", start, start + size) + 1
    return _POOL[start:end] if end > start else _POOL[start:start + size].rstrip() + "\n"


def _person(rng: random.Random, company: str) -> tuple[str, str]:
    first, last = rng.choice(_FIRST), rng.choice(_LAST)
    ascii_name = unicodedata.normalize("NFKD", f"{first}.{last}").encode("ascii", "ignore")
    local = ascii_name.decode().lower().replace("'", "")
    return f"{first} {last}", f"{local}@{company}.example.test"


def iter_messages(
    count: int,
    seed: int = 0,
    *,
    median_size: int = 8 * 1024,
    sigma: float = 0.9,
    attachment_ratio: float = 0.12,
    html_ratio: float = 0.7,
    reply_ratio: float = 0.35,
    start: datetime = datetime(2026, 1, 5, 8, 30, tzinfo=UTC),
    rep: tuple[str, str] = ("Rex Rep", "rex.rep@sales.example.test"),
) -> Iterator[bytes]:
    """Yield `count` realistic messages, deterministically from `seed`.

    Sizes are log-normal around `median_size` (bodies only; `attachment_ratio`
    of the messages also carry a 10 KB-2 MB attachment). About half are sent by
    `rep`, the rest by customers to the rep; `reply_ratio` of them reply to an
    earlier message (In-Reply-To/References, "Re:" subject).
    """
    rng = random.Random(seed)
    # Attachment-carrying messages sit in the upper tail; shrink body sizes so the
    # median of the whole corpus stays near `median_size` (calibrated on 3,000).
    body_median = 0.97 * median_size * math.exp(-sigma * 0.16 * attachment_ratio / 0.12)
    previous: list[tuple[str, str, list[str]]] = []  # (message-id, subject, references)
    when = start
    for i in range(count):
        when += timedelta(seconds=rng.randint(30, 4 * 3600))
        customer = _person(rng, rng.choice(_COMPANIES))
        outbound = rng.random() < 0.5
        sender, recipient = (rep, customer) if outbound else (customer, rep)
        cc = [_person(rng, rng.choice(_COMPANIES)) for _ in range(rng.choice((0, 0, 0, 1, 2)))]
        message_id = f"<{seed}.{i}.{rng.getrandbits(48):012x}@{_domain(sender)}>"
        in_reply_to, references = None, []
        if previous and rng.random() < reply_ratio:
            parent_id, parent_subject, parent_refs = rng.choice(previous[-50:])
            subject = parent_subject if parent_subject.startswith("Re: ") else f"Re: {parent_subject}"
            in_reply_to, references = parent_id, (parent_refs + [parent_id])[-10:]
        else:
            subject = rng.choice(_SUBJECTS).format(n=rng.randint(100, 99999))

        size = int(min(rng.lognormvariate(math.log(body_median), sigma), 400_000))
        with_html = rng.random() < html_ratio
        # Header block is ~600-900 bytes; the HTML part is about as long as the text.
        body = max(200, size - 700)
        text = _prose(rng, body * 9 // 20 if with_html else body)
        html = None
        if with_html:
            paras = "".join(f"<p style=\"margin:0 0 1em\">{p}</p>\n" for p in text.split("\n\n"))
            html = f"<html><head><meta charset=\"utf-8\"></head><body>\n{paras}</body></html>\n"
        attachments = []
        if rng.random() < attachment_ratio:
            ext, ctype = rng.choice(_ATTACH_TYPES)
            att_size = int(min(max(rng.lognormvariate(math.log(60_000), 1.0), 10_000), 2_000_000))
            data = (_prose(rng, att_size).encode() if ext == "csv" else rng.randbytes(att_size))
            attachments.append(Attachment(f"document-{i}.{ext}", data, ctype))
        charset = rng.choices(["utf-8", "iso-8859-1", "windows-1252"], [0.85, 0.1, 0.05])[0]
        cte = rng.choices([None, "quoted-printable", "base64"], [0.6, 0.3, 0.1])[0]

        yield build_message(
            from_=sender, to=[recipient], cc=cc, subject=subject, date=when,
            message_id=message_id, in_reply_to=in_reply_to, references=references,
            text=text, html=html, attachments=attachments, charset=charset, cte=cte,
            headers=[("X-Mailer", rng.choice(["Outlook 16.0", "Thunderbird 128.3",
                                               "Apple Mail (2.3776)", "Gmail"]))],
        )
        previous.append((message_id, subject, references))


def generate_messages(count: int, seed: int = 0, **options: object) -> list[bytes]:
    """`list(iter_messages(count, seed, **options))` (same options)."""
    return list(iter_messages(count, seed, **options))  # type: ignore[arg-type]


CORPUS_VERSION = 1  # bump when iter_messages() output changes, to invalidate caches


def cached_messages(
    count: int, seed: int = 0, *, cache_dir: str | Path, **options: object
) -> list[bytes]:
    """`generate_messages()` memoised in `cache_dir` (building costs ~2 ms a message).

    Reusing a corpus also avoids ext4's slow delete-then-recreate pattern when
    benchmarks are re-run.
    """
    key = repr((CORPUS_VERSION, count, seed, sorted(options.items())))
    path = Path(cache_dir) / f"corpus-{hashlib.sha256(key.encode()).hexdigest()[:16]}.bin"
    if path.exists():
        data, out, pos = path.read_bytes(), [], 0
        while pos < len(data):
            size = int.from_bytes(data[pos:pos + 8], "big")
            out.append(data[pos + 8:pos + 8 + size])
            pos += 8 + size
        return out
    messages = generate_messages(count, seed, **options)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_bytes(b"".join(len(m).to_bytes(8, "big") + m for m in messages))
    os.replace(tmp, path)  # atomic: concurrent workers never read half a file
    return messages
