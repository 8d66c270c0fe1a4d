"""parse_message: every field from real-world and broken messages, and it never raises."""

from __future__ import annotations

import base64
import random
import subprocess
import sys
from datetime import UTC, datetime
from email.utils import getaddresses

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from salesinbox.core.parsing.headers import normalise_subject, split_mailboxes
from salesinbox.core.parsing.html_text import html_to_text
from salesinbox.core.parsing.message_parser import (
    MAX_ADDRESSES,
    MAX_BODY_BYTES,
    MAX_PARTS,
    Address,
    AttachmentInfo,
    ParsedMessage,
    counterparties,
    direction_for,
    parse_message,
)
from salesinbox.core.parsing.snippets import make_snippet

from .servers.messages import Attachment, build_message, generate_messages

CRLF = b"\r\n"


def test_fetching_and_parsing_do_not_load_the_orm() -> None:
    """The parse worker processes import the fetch and parse modules: neither may pull in
    Tortoise or the models (a fresh interpreter, so nothing else has loaded them first)."""
    code = (
        "import sys\n"
        "import salesinbox.core.sync.imap_fetch, salesinbox.core.parsing.message_parser\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('tortoise', 'pypika_tortoise')"
        " or m.startswith('salesinbox.core.db')))\n"
    )
    completed = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert completed.stdout.strip() == "[]"


def msg(*headers: str | bytes, body: bytes = b"Hello\r\n") -> bytes:
    """A message from header lines (str is UTF-8 encoded, bytes kept raw) and a body, with
    a Date header unless one is given (without one, the parser warns)."""
    lines = [h.encode() if isinstance(h, str) else h for h in headers]
    if not any(line[:5].lower() == b"date:" for line in lines):
        lines.append(b"Date: Mon, 2 Jan 2006 15:04:05 +0000")
    return CRLF.join(lines) + CRLF + CRLF + body


def mime(boundary: str, *parts: bytes, close: bool = True) -> bytes:
    """A multipart body: each part is its headers + blank line + body."""
    sep = b"--" + boundary.encode()
    out = b"".join(sep + CRLF + part + CRLF for part in parts)
    return out + (sep + b"--" + CRLF if close else b"")


PDF = b"%PDF-1.4\n" + bytes(range(256)) * 4 + b"%%EOF\n"  # 1039 bytes, binary


def b64(data: bytes) -> bytes:
    return base64.encodebytes(data).replace(b"\n", CRLF)


# --------------------------------------------------------------------------- headers


def test_subject_encoded_words_utf8_b_and_q_latin1_mixed_with_ascii() -> None:
    parsed = parse_message(msg(
        "Subject: Re: =?utf-8?B?R3LDvMOfZQ==?= aus =?iso-8859-1?q?K=F6ln?=,",
        "  =?utf-8?q?caf=C3=A9?=  =?UTF-8?Q?_cr=C3=A8me?= ok"))
    # the space between adjacent encoded words is dropped (RFC 2047 6.2), folding unfolded
    assert parsed.subject == "Re: Grüße aus Köln, café crème ok"
    assert parsed.warnings == ()


def test_encoded_words_split_inside_a_multibyte_character_are_joined() -> None:
    # "見積" is e8 a6 8b e7 a9 8d: some encoders cut words between bytes of one character
    parsed = parse_message(msg("Subject: =?utf-8?B?6KaL5w==?= =?utf-8?B?qY0=?="))
    assert parsed.subject == "見積"


def test_display_names_are_decoded_and_addresses_normalised() -> None:
    parsed = parse_message(msg(
        "From: =?utf-8?q?J=C3=B6rg_M=C3=BCller?= <Jorg.Muller@Example.COM>",
        'To: "=?iso-8859-1?q?Ren=E9e?=" <renee@example.org>, "Doe, Jane" <JANE@example.org>',
        "Cc: plain@example.net (Plain Person)"))
    assert parsed.from_ == (Address("Jörg Müller", "jorg.muller@example.com"),)
    assert parsed.to == (Address("Renée", "renee@example.org"),
                         Address("Doe, Jane", "jane@example.org"))
    assert parsed.cc == (Address("Plain Person", "plain@example.net"),)


def test_idn_domains_become_idna_ascii() -> None:
    raw = msg("From: Bücher GmbH <Info@Bücher.example>", "To: büro@münchen.example")
    parsed = parse_message(raw)
    assert parsed.from_ == (Address("Bücher GmbH", "info@xn--bcher-kva.example"),)
    assert parsed.to == (Address("", "büro@xn--mnchen-3ya.example"),)
    assert parsed.warnings == ()
    # Python's own generator writes an IDN domain as an encoded word: read that too
    built = parse_message(build_message(to=("Jörg", "jorg@bücher.example")))
    assert built.to == (Address("Jörg", "jorg@xn--bcher-kva.example"),)


def test_duplicate_addresses_within_a_header_are_removed() -> None:
    parsed = parse_message(msg("To: Ann <ann@x.example>, ANN@X.example, bob@y.example, "
                               "Other Name <ann@x.example>"))
    assert parsed.to == (Address("Ann", "ann@x.example"), Address("", "bob@y.example"))


def test_group_syntax_and_undisclosed_recipients() -> None:
    parsed = parse_message(msg("To: undisclosed-recipients:;",
                               "Cc: Sales Team: ann@x.example, Bob <bob@y.example>;, c@z.example"))
    assert parsed.to == ()
    assert parsed.cc == (Address("", "ann@x.example"), Address("Bob", "bob@y.example"),
                         Address("", "c@z.example"))
    assert parsed.warnings == ()


def test_invalid_addresses_are_dropped_with_a_warning() -> None:
    parsed = parse_message(msg("To: nobody, ok@x.example, bad@-x.example"))
    assert parsed.to == (Address("", "ok@x.example"),)
    assert parsed.warnings == ("invalid address 'nobody' in To: dropped",
                               "invalid address 'bad@-x.example' in To: dropped")


def test_reply_to_bcc_and_sender_fallback() -> None:
    parsed = parse_message(msg("Sender: Robot <robot@x.example>", "Bcc: hidden@y.example",
                               "Reply-To: Desk <desk@x.example>"))
    assert parsed.from_ == (Address("Robot", "robot@x.example"),)
    assert parsed.bcc == (Address("", "hidden@y.example"),)
    assert parsed.reply_to == (Address("Desk", "desk@x.example"),)
    assert parsed.warnings == ("no From address: the Sender header is used",)


@given(st.lists(st.tuples(
    st.text(st.characters(min_codepoint=32, max_codepoint=126,
                          blacklist_characters='"();:\\[]<>,@'), max_size=12),
    st.from_regex(r"[a-z0-9._+-]{1,10}@[a-z0-9-]{1,10}\.[a-z]{2,5}", fullmatch=True),
    st.booleans()), max_size=6))
def test_fast_address_path_agrees_with_getaddresses(
        entries: list[tuple[str, str, bool]]) -> None:
    raw = ", ".join(f"{name} <{addr}>" if bracketed else addr for name, addr, bracketed in entries)
    assert split_mailboxes(raw) == [pair for pair in getaddresses([raw]) if pair[1]]


def test_pathological_headers_take_linear_time() -> None:
    # each of these took from seconds to hours with a backtracking regular expression
    assert split_mailboxes(" " * 100_000 + "x@y.example") == [("", "x@y.example")]
    assert normalise_subject("Re" + " " * 100_000 + "x") == "re x"
    assert make_snippet("Am Montag schrieb " * 3000 + ":\nreal text") == "real text"


def test_raw_8bit_headers_utf8_then_latin1() -> None:
    utf8 = parse_message(msg("Subject: Grüße", "From: Jörg <j@x.example>"))
    assert (utf8.subject, utf8.from_[0].name, utf8.warnings) == ("Grüße", "Jörg", ())
    latin1 = parse_message(msg("Subject: Grüße".encode("latin-1"),
                               "From: Jörg <j@x.example>".encode("latin-1")))
    assert (latin1.subject, latin1.from_[0].name) == ("Grüße", "Jörg")
    assert latin1.warnings == ("invalid utf-8 bytes in Subject header: decoded as latin-1",
                               "invalid utf-8 bytes in From header: decoded as latin-1")


def test_dates() -> None:
    assert parse_message(msg("Date: Mon, 5 Jan 2026 10:30:00 +0200")).date == datetime(
        2026, 1, 5, 8, 30, tzinfo=UTC)
    assert parse_message(msg("Date: 5 Jan 2026 08:30:00 -0000 (UTC)")).date == datetime(
        2026, 1, 5, 8, 30, tzinfo=UTC)
    missing = parse_message(b"Subject: x\r\n\r\nHello\r\n")
    assert (missing.date, missing.warnings) == (None, ("no Date header",))
    empty = parse_message(msg("Date: "))
    assert (empty.date, empty.warnings) == (None, ("no Date header",))
    garbage = parse_message(msg("Date: next Tuesday-ish"))
    assert (garbage.date, garbage.warnings) == (None, ("invalid Date 'next Tuesday-ish': ignored",))
    out_of_range = parse_message(msg("Date: Mon, 31 Feb 2026 10:00:00 +0000"))
    assert out_of_range.date is None and len(out_of_range.warnings) == 1


def test_message_ids_are_normalised() -> None:
    parsed = parse_message(msg("Message-ID:  <abc.123@Host.example> ",
                               "In-Reply-To: <p1@x.example> (Bob's message)",
                               "References: <r1@x.example>\r\n\t<r2@x\r\n .example> "
                               "<r1@x.example>"))
    assert parsed.message_id == "<abc.123@Host.example>"  # ids are case-sensitive: kept
    assert parsed.in_reply_to == "<p1@x.example>"
    assert parsed.references == ("<r1@x.example>", "<r2@x.example>")
    bare = parse_message(msg("Message-ID: abc@x.example", "References: r1@x.example junk"))
    assert (bare.message_id, bare.references) == ("<abc@x.example>", ("<r1@x.example>",))
    empty = parse_message(msg("Message-ID:   ", "In-Reply-To: "))
    assert (empty.message_id, empty.in_reply_to, empty.references) == (None, None, ())


# --------------------------------------------------------------------------- threads


def test_thread_key_prefers_references_then_in_reply_to_then_own_id() -> None:
    assert parse_message(msg("Message-ID: <m@x>", "In-Reply-To: <p@x>",
                             "References: <root@x> <p@x>")).thread_key == "<root@x>"
    assert parse_message(msg("Message-ID: <m@x>", "In-Reply-To: <p@x>")).thread_key == "<p@x>"
    assert parse_message(msg("Message-ID: <m@x>")).thread_key == "<m@x>"


def test_thread_key_without_ids_groups_by_subject_and_participants() -> None:
    first = parse_message(msg("From: Ann <ann@x.example>", "To: bob@y.example",
                              "Subject: Quote  for 10 licences"))
    reply = parse_message(msg("From: BOB@y.example", "To: Ann <ann@x.example>",
                              "Subject: RE: AW: Fwd:  quote for 10 licences"))
    other_subject = parse_message(msg("From: Ann <ann@x.example>", "To: bob@y.example",
                                      "Subject: Quote for 20 licences"))
    other_people = parse_message(msg("From: Ann <ann@x.example>", "To: carl@y.example",
                                     "Subject: Quote for 10 licences"))
    assert first.message_id is None
    assert first.thread_key.startswith("subject:") and len(first.thread_key) == 8 + 40
    assert reply.thread_key == first.thread_key
    assert other_subject.thread_key != first.thread_key
    assert other_people.thread_key != first.thread_key
    # stable across runs: a fixed value for a fixed input (sha1 of subject + addresses)
    assert parse_message(b"").thread_key == "subject:adc83b19e793491b1c6ea0fd8b46cd9f32e592fc"


# --------------------------------------------------------------------------- bodies


def test_multipart_alternative_keeps_both_bodies() -> None:
    raw = build_message(text="Plain version\n", html="<p>HTML <b>version</b></p>\n",
                        subject="Alt")
    parsed = parse_message(raw)
    assert parsed.text == "Plain version\n"
    assert parsed.html == "<p>HTML <b>version</b></p>\n"
    assert parsed.snippet == "Plain version"
    assert (parsed.attachments, parsed.has_attachments, parsed.warnings) == ((), False, ())


def test_mixed_with_base64_pdf_and_rfc2231_filenames() -> None:
    raw = msg("Content-Type: multipart/mixed; boundary=\"b1\"", body=mime(
        "b1",
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nSee attached.",
        b"Content-Type: application/pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment; filename*=utf-8''na%C3%AFve.pdf\r\n\r\n" + b64(PDF),
        b"Content-Type: application/pdf; name=\"x.pdf\"\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: attachment;\r\n filename*0*=iso-8859-1''r%E9sum%E9;\r\n"
        b" filename*1=\".pdf\"\r\n\r\n" + b64(PDF[:1000]),
        b"Content-Type: application/octet-stream;\r\n"
        b" name=\"=?utf-8?q?Pr=C3=A9sentation?= 1.key\"\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\n" + b64(PDF[:1001])))
    parsed = parse_message(raw)
    assert parsed.text == "See attached."
    assert parsed.attachments == (
        AttachmentInfo("naïve.pdf", "application/pdf", 1039, None, False),
        AttachmentInfo("résumé.pdf", "application/pdf", 1000, None, False),
        AttachmentInfo("Présentation 1.key", "application/octet-stream", 1001, None, False),
    )
    assert parsed.has_attachments is True
    assert parsed.warnings == ()


@pytest.mark.parametrize("length", [0, 1, 2, 3, 4, 57, 58, 59, 100_000])
def test_attachment_size_is_the_decoded_size(length: int) -> None:
    data = random.Random(length).randbytes(length)
    parsed = parse_message(build_message(attachments=[Attachment("f.bin", data)]))
    assert [a.size for a in parsed.attachments] == [length]


def _large_base64_shapes() -> list[bytes]:
    """Messages whose long base64 runs are set aside (core/parsing/base64_runs.py): an
    attachment, a base64 text and HTML body, a run that ends at a boundary without a line end,
    an attached message holding an attachment, quoted-printable and 7bit parts of base64-like
    lines, a run in the header block, LF line ends, a multipart without its closing boundary."""
    data = random.Random(5).randbytes(40_000)
    text = ("Quarterly numbers attached. " * 400).encode()
    inner = msg("Subject: inner", "Content-Type: multipart/mixed; boundary=in", body=mime(
        "in", b"Content-Type: text/plain\r\n\r\nsee file",
        b"Content-Type: image/png; name=p.png\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(data)))
    lines = b"".join(b"QUJD" * 19 + CRLF for _ in range(60))
    shapes = [
        msg("Content-Type: multipart/mixed; boundary=b", body=mime(
            "b", b"Content-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n" + b64(text),
            b"Content-Type: text/html; charset=utf-8\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64(b"<p>" + text + b"</p>"),
            b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64(data).rstrip(CRLF),
            b"Content-Type: message/rfc822\r\n\r\n" + inner,
            b"Content-Type: text/csv; name=q.csv\r\nContent-Transfer-Encoding: quoted-printable\r\n\r\n" + lines,
            b"Content-Type: application/x-bits; name=s.txt\r\n\r\n" + lines + b"tail=\r\n")),
        msg("Content-Type: multipart/mixed; boundary=b", body=mime(
            "b", b"Content-Type: application/pdf; name=a.pdf\r\nContent-Transfer-Encoding: base64\r\n\r\n"
            + b64(data), close=False)),
        msg("Content-Transfer-Encoding: base64", "Content-Type: text/plain; charset=utf-8", body=b64(text)),
        b"Subject: junk in the header block\r\nX-Encoding: base64\r\n" + lines + b"\r\nbody\r\n",
    ]
    return shapes + [raw.replace(CRLF, b"\n") for raw in shapes]


@pytest.mark.parametrize("raw", _large_base64_shapes())
def test_base64_runs_set_aside_change_nothing(raw: bytes, monkeypatch: pytest.MonkeyPatch) -> None:
    from salesinbox.core.parsing import message_parser
    from salesinbox.core.parsing.base64_runs import SetAside, set_aside

    assert set_aside(raw)[1].runs  # the shape exercises the set-aside path
    parsed = parse_message(raw)
    monkeypatch.setattr(message_parser, "set_aside", lambda raw: (raw, SetAside([])))
    assert parsed == parse_message(raw)


def test_quoted_printable_and_8bit_attachment_sizes() -> None:
    raw = msg("Content-Type: multipart/mixed; boundary=b", body=mime(
        "b",
        b"Content-Type: text/csv; name=a.csv\r\nContent-Transfer-Encoding: quoted-printable\r\n"
        b"\r\nna=C3=AFve;1=\r\n;2",
        b"Content-Type: text/csv; name=b.csv\r\nContent-Transfer-Encoding: 8bit\r\n\r\n"
        b"na\xc3\xafve"))
    assert [(a.filename, a.size) for a in parse_message(raw).attachments] == [
        ("a.csv", 10), ("b.csv", 6)]  # "naïve;1" + soft line break + ";2"


def test_8bit_junk_in_base64_with_rfc2231_charset() -> None:
    # compat32's get_payload() raises TypeError on this part: sized from the decoded data
    raw = msg("Content-Type: multipart/mixed; boundary=b", body=mime(
        "b", b"Content-Type: application/pdf; name=a.pdf; charset*=utf-8''x\r\n"
        b"Content-Transfer-Encoding: base64\r\n\r\nQUJD\xff\xfeRA=="))
    parsed = parse_message(raw)
    assert parsed.attachments == (AttachmentInfo("a.pdf", "application/pdf", 4, None, False),)
    assert parsed.warnings == ("application/pdf part: invalid base64 (decoded what could be)",)


def test_inline_image_with_content_id_in_nested_multipart() -> None:
    related = mime(
        "rel",
        b"Content-Type: text/html; charset=utf-8\r\n\r\n<p>Logo: <img src=\"cid:logo@x\"></p>",
        b"Content-Type: image/png\r\nContent-ID: <logo@x>\r\nContent-Transfer-Encoding: base64\r\n"
        b"Content-Disposition: inline\r\n\r\n" + b64(b"\x89PNG" + bytes(96)))
    alternative = mime(
        "alt",
        b"Content-Type: text/plain; charset=utf-8\r\n\r\nLogo: [logo]",
        b"Content-Type: multipart/related; boundary=rel\r\n\r\n" + related)
    raw = msg("Content-Type: multipart/mixed; boundary=mix", body=mime(
        "mix",
        b"Content-Type: multipart/alternative; boundary=alt\r\n\r\n" + alternative,
        b"Content-Type: application/pdf; name=q.pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + b64(PDF)))
    parsed = parse_message(raw)
    assert parsed.text == "Logo: [logo]"
    assert parsed.html == '<p>Logo: <img src="cid:logo@x"></p>'
    assert parsed.attachments == (
        AttachmentInfo("", "image/png", 100, "logo@x", True),
        AttachmentInfo("q.pdf", "application/pdf", 1039, None, False))
    assert parsed.has_attachments is True


def test_inline_images_alone_are_not_attachments() -> None:
    raw = msg("Content-Type: multipart/related; boundary=r", body=mime(
        "r", b"Content-Type: text/html\r\n\r\n<img src=cid:a>",
        b"Content-Type: image/gif; name=a.gif\r\nContent-ID: <a>\r\n\r\nGIF89a"))
    parsed = parse_message(raw)
    assert parsed.attachments == (AttachmentInfo("a.gif", "image/gif", 6, "a", True),)
    assert parsed.has_attachments is False
    assert parsed.text == ""  # the HTML has no text


def test_text_parts_around_an_inline_image_are_joined() -> None:
    raw = msg("Content-Type: multipart/mixed; boundary=m", body=mime(
        "m", b"Content-Type: text/plain\r\n\r\nBefore the picture.",
        b"Content-Type: image/jpeg\r\nContent-Disposition: inline; filename=IMG_1.jpg\r\n\r\nJPEG",
        b"Content-Type: text/plain\r\n\r\nAfter it."))
    parsed = parse_message(raw)
    assert parsed.text == "Before the picture.\nAfter it."
    assert parsed.attachments == (AttachmentInfo("IMG_1.jpg", "image/jpeg", 4, None, False),)


def test_message_rfc822_is_one_attachment_named_after_its_subject() -> None:
    inner = msg("From: a@x.example", "Subject: =?utf-8?q?Original_d=C3=A9tails?=",
                body=b"Inner body that is not the outer text.\r\n")
    raw = msg("Subject: Fwd", "Content-Type: multipart/mixed; boundary=o", body=mime(
        "o", b"Content-Type: text/plain\r\n\r\nForwarding this.",
        b"Content-Type: message/rfc822\r\n\r\n" + inner,
        b"Content-Type: message/rfc822\r\nContent-Disposition: attachment; filename=\"x.eml\""
        b"\r\n\r\n" + inner))
    parsed = parse_message(raw)
    assert parsed.text == "Forwarding this."
    assert [(a.filename, a.content_type, a.is_inline) for a in parsed.attachments] == [
        ("Original détails.eml", "message/rfc822", False), ("x.eml", "message/rfc822", False)]
    assert all(len(inner) - 10 <= a.size <= len(inner) for a in parsed.attachments)


def test_html_only_message_derives_text() -> None:
    html = ("<html><head><title>T</title><style>p {color: red}</style></head><body>"
            "<p>Hello&nbsp;Bob &amp; team,</p><script>alert(1)</script><div>See   you</div>"
            "<div>On Mon, Bob wrote:</div><blockquote><p>Old text</p></blockquote></body></html>")
    parsed = parse_message(build_message(text=None, html=html))
    assert parsed.html == html + "\n"
    # &nbsp; collapses like any whitespace
    assert parsed.text == "Hello Bob & team,\n\nSee you\nOn Mon, Bob wrote:\n\n> Old text"
    assert parsed.snippet == "Hello Bob & team, See you"


def test_html_to_text_reads_what_a_browser_shows() -> None:
    assert html_to_text("<pre>line 1\nline 2</pre><br/>x") == "line 1\nline 2\n\nx"
    assert html_to_text("<table><tr><td>Qty</td><td>10</td></tr><tr><td>Price</td>"
                        "<td>&euro;5</td></tr></table>") == "Qty 10\nPrice €5"
    assert html_to_text('<a title="a > b" href="x">link</a> <img alt="Bob\'s">!') == "link !"
    assert html_to_text("<HEAD><meta charset=utf-8>no head end<P>body") == (
        "no head end\n\nbody")
    assert html_to_text("<!-- note --><![if mso]>a<![endif]> x &lt;y&gt; <<>> &bogus;") == (
        "a x <y> <<>> &bogus;")
    assert html_to_text("<p>text <script>document.write('<p>x')") == "text"  # unclosed script
    assert html_to_text("if a<b then") == "if a"  # a tag open at the end hides the rest
    assert html_to_text('<a "' + ">" * 100_000) == ""  # no quadratic blow-up on junk


def test_charsets() -> None:
    def body(charset: str, data: bytes) -> ParsedMessage:
        return parse_message(msg(f"Content-Type: text/plain; charset={charset}", body=data))

    assert (body("utf8", "café".encode()).text, body("utf8", b"").warnings) == ("café", ())
    assert body("unicode-1-1-utf-7", b"caf+AOk-").text == "café"
    assert body('"ISO-8859-1"', b"caf\xe9").text == "café"
    bogus = body("x-bogus", "café".encode())
    assert (bogus.text, bogus.warnings) == (
        "café", ("unknown charset 'x-bogus' in text/plain part: decoded as utf-8",))
    bogus_latin = body("x-bogus", b"caf\xe9")
    assert (bogus_latin.text, bogus_latin.warnings) == (
        "café", ("unknown charset 'x-bogus' in text/plain part: decoded as latin-1",))
    wrong = body("utf-8", b"caf\xe9 cr\xe8me")  # latin-1 bytes declared utf-8
    assert (wrong.text, wrong.warnings) == (
        "café crème", ("invalid utf-8 bytes in text/plain part: decoded as latin-1",))
    damaged = body("utf-8", "café".encode() + b"\xff")  # utf-8 with one bad byte
    assert damaged.text == "café\ufffd"
    assert damaged.warnings == (
        "invalid utf-8 bytes in text/plain part: decoded as utf-8 with replacement characters",)
    empty = body('""', b"plain")
    assert (empty.text, empty.warnings) == ("plain", ())
    not_a_charset = body("base64", b"QUJD")
    assert (not_a_charset.text, not_a_charset.warnings) == (
        "QUJD", ("unknown charset 'base64' in text/plain part: decoded as utf-8",))
    assert body("gb2312", "见".encode("gb18030")).text == "见"
    nul = body('"utf\x00-8"', b"ok")  # a NUL in the charset name
    assert (nul.text, nul.warnings) == ("ok", (
        "unknown charset 'utf\\x00-8' in text/plain part: decoded as utf-8",))


def test_nul_bytes_are_removed() -> None:
    parsed = parse_message(msg("Subject: a\x00b", body=b"x\x00y"))
    assert (parsed.subject, parsed.text) == ("ab", "xy")
    assert parsed.warnings == ("NUL bytes removed from Subject header",
                               "NUL bytes removed from text/plain body")


def test_bare_lf_line_endings_parse_like_crlf() -> None:
    crlf = build_message(subject="Line endings", html="<p>x</p>",
                         attachments=[Attachment("a.bin", b"\x00\x01" * 50)])
    lf = parse_message(crlf.replace(b"\r\n", b"\n"))
    assert lf.text == "Hello,\n\nplease find the details below.\n\nRegards\n"
    assert lf.attachments == (
        AttachmentInfo("a.bin", "application/octet-stream", 100, None, False),)
    assert lf.subject == "Line endings" and lf.warnings == ()
    full = parse_message(crlf)
    assert (full.text, full.html, full.attachments) == (lf.text, lf.html, lf.attachments)


def test_truncated_mime_keeps_what_was_read() -> None:
    raw = msg("Content-Type: multipart/mixed; boundary=t", body=mime(
        "t", b"Content-Type: text/plain\r\n\r\nStill here.",
        b"Content-Type: application/pdf; name=cut.pdf\r\nContent-Transfer-Encoding: base64\r\n"
        b"\r\n" + b64(PDF)[:200], close=False))
    parsed = parse_message(raw)
    assert parsed.text == "Still here."
    assert [(a.filename, a.size) for a in parsed.attachments] == [("cut.pdf", 147)]
    assert parsed.warnings == ("message: closing MIME boundary missing (truncated message?)",)


def test_multipart_without_boundary_is_read_as_text() -> None:
    parsed = parse_message(msg("Content-Type: multipart/mixed", body=b"just text"))
    assert parsed.text == "just text"
    assert parsed.warnings == ("message: multipart without a boundary: the body is read as text",)


def test_empty_message() -> None:
    parsed = parse_message(b"")
    assert parsed == ParsedMessage(
        message_id=None, in_reply_to=None, references=(), thread_key=parsed.thread_key,
        subject="", from_=(), to=(), cc=(), bcc=(), reply_to=(), date=None, text="", html="",
        snippet="", attachments=(), has_attachments=False, size=0, warnings=("empty message", "no Date header"))


# --------------------------------------------------------------------------- limits


def test_limits_protect_the_server() -> None:
    big = parse_message(msg("Content-Type: text/plain; charset=utf-8",
                            body=b"a" * (MAX_BODY_BYTES + 10)))
    assert len(big.text) == MAX_BODY_BYTES
    assert big.warnings == (f"text/plain part larger than {MAX_BODY_BYTES} bytes: truncated",)
    wide = parse_message(msg("Content-Type: text/plain; charset=utf-8",
                             body="é".encode() * (MAX_BODY_BYTES // 2 + 3)))
    assert wide.text == "é" * (MAX_BODY_BYTES // 2)  # no character cut in two

    many = parse_message(msg("To: " + ", ".join(f"u{i}@x.example" for i in range(1500))))
    assert len(many.to) == MAX_ADDRESSES
    assert many.warnings == (f"more than {MAX_ADDRESSES} addresses in To: the rest ignored",)

    parts = mime("p", *[b"Content-Type: image/png\r\n\r\nX"] * (MAX_PARTS + 50))
    walked = parse_message(msg("Content-Type: multipart/mixed; boundary=p", body=parts))
    assert len(walked.attachments) == MAX_PARTS - 1  # the multipart itself is a part
    assert walked.warnings == (f"more than {MAX_PARTS} MIME parts: the rest ignored",)

    huge_subject = parse_message(msg("Subject: " + "word " * 400_000))
    assert len(huge_subject.subject) == 2000
    assert huge_subject.warnings == ("Subject longer than 2000 characters: truncated",
                                     "header block longer than 64 KiB: only its start is kept")
    encoded = parse_message(msg("Subject: " + "=?utf-8?q?a?= " * 100_000))  # 1.4 MB of words
    assert encoded.subject == "a" * 1142  # the first 16,000 characters are decoded
    assert encoded.warnings == ("Subject longer than 2000 characters: truncated",
                                "header block longer than 64 KiB: only its start is kept")


def test_address_headers_that_defeat_getaddresses_cost_one_field() -> None:
    parsed = parse_message(msg("To: " + "(" * 5000, "Cc: ok@x.example"))  # nested comments
    assert (parsed.to, parsed.cc) == ((), (Address("", "ok@x.example"),))
    assert parsed.warnings == ("could not read the To header (RecursionError): left empty",)


def test_deeply_nested_multiparts_do_not_exhaust_the_stack() -> None:
    raw = b"".join(b"Content-Type: multipart/mixed; boundary=b%d\r\n\r\n--b%d\r\n" % (i, i)
                   for i in range(5000)) + b"Content-Type: text/plain\r\n\r\ndeep"
    parsed = parse_message(raw)
    assert parsed.warnings[0] == "MIME structure nested too deeply: only the headers are read"
    assert parsed.text.startswith("--b0\n")
    shallow = parse_message(raw[:raw.index(b"boundary=b40\r\n")])
    assert "MIME parts nested deeper than 32: the inner ones ignored" in shallow.warnings


# --------------------------------------------------------------------------- snippet


def test_snippet_rules() -> None:
    reply = ("Thanks, that works for us.\n\nOn Mon, 5 Jan 2026 at 10:00, Bob Buyer <\n"
             "bob@customer.example> wrote:\n> Can you do 10 licences?\n> Bob\n")
    assert make_snippet(reply) == "Thanks, that works for us."
    bottom_posted = "> quoted first\n>> deeper\nAm 5.1.2026 schrieb Ann:\nMy   answer\nhere"
    assert make_snippet(bottom_posted) == "My answer here"
    outlook = "Sure.\r\n\r\n-----Original Message-----\r\nFrom: Bob\r\nSent: Monday"
    assert make_snippet(outlook) == "Sure."
    signature = "Short note.\n-- \nAlice Seller\nSales"
    assert make_snippet(signature) == "Short note."
    long_text = "word " * 100
    assert make_snippet(long_text) == ("word " * 40).strip()
    assert len(make_snippet("x" * 1000)) == 200
    parsed = parse_message(build_message(text="Hi Bob,\n\nhere it is.\n\nOn Tue Bob wrote:\n> ?"))
    assert parsed.snippet == "Hi Bob, here it is."


# --------------------------------------------------------------------------- direction


def test_direction_and_counterparties() -> None:
    parsed = parse_message(msg("From: Rex <REX@sales.example>",
                               "To: Ann <ann@customer.example>, rex@sales.example",
                               "Cc: bob@customer.example, Ann Again <ann@customer.example>",
                               "Bcc: alias@sales.example, carl@other.example"))
    own = {"rex@sales.example", " Alias@Sales.Example "}
    assert direction_for(parsed, own, folder_is_sent=False) == "SENT"
    assert direction_for(parsed, {"someone@else.example"}, folder_is_sent=False) == "RECEIVED"
    assert direction_for(parsed, {"someone@else.example"}, folder_is_sent=True) == "SENT"
    assert counterparties(parsed, own) == [Address("Ann", "ann@customer.example"),
                                           Address("", "bob@customer.example"),
                                           Address("", "carl@other.example")]
    assert counterparties(parsed, set())[0] == Address("Rex", "rex@sales.example")


# --------------------------------------------------------------------------- robustness


def _assert_storable(parsed: ParsedMessage) -> None:
    assert isinstance(parsed, ParsedMessage)
    strings = [parsed.subject, parsed.text, parsed.html, parsed.snippet, parsed.thread_key,
               *parsed.warnings, *(a.name for a in parsed.from_ + parsed.to + parsed.cc),
               *(a.filename for a in parsed.attachments)]
    for text in strings:
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogates: PostgreSQL and SQLite accept it
    assert len(parsed.snippet) <= 200
    assert parsed.date is None or parsed.date.tzinfo is UTC


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=4000))
def test_random_bytes_never_raise(raw: bytes) -> None:
    parsed = parse_message(raw)
    _assert_storable(parsed)
    assert parsed.size == len(raw)


_SAMPLES = [
    build_message(subject="Grüße", to=[("Jörg", "j@x.example")], html="<p>x</p>",
                  attachments=[Attachment("naïve.pdf", PDF, "application/pdf")], cte="base64"),
    msg("Content-Type: multipart/mixed; boundary=o", "Subject: =?utf-8?q?a?=", body=mime(
        "o", b"Content-Type: text/plain; charset=iso-8859-1\r\n\r\ncaf\xe9",
        b"Content-Type: message/rfc822\r\n\r\n" + msg("Subject: inner"),
        b"Content-Type: image/png\r\nContent-ID: <i>\r\nContent-Transfer-Encoding: base64\r\n\r\n"
        + b64(PDF[:90]))),
]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(_SAMPLES), st.lists(st.tuples(st.integers(0, 10_000), st.binary(max_size=8),
                                                     st.integers(0, 8)), max_size=6),
       st.integers(0, 20_000))
def test_damaged_messages_never_raise(raw: bytes, edits: list[tuple[int, bytes, int]],
                                      cut: int) -> None:
    data = bytearray(raw)
    for position, insert, delete in edits:  # splice random bytes in, delete a few
        position %= len(data) + 1
        data[position:position + delete] = insert
    parsed = parse_message(bytes(data[:cut] if cut < len(data) else data))
    _assert_storable(parsed)


@given(st.text(max_size=60), st.sampled_from(["utf-8", "iso-8859-1", "x-bogus", "utf-16",
                                               "unicode_escape", "zlib", ""]),
       st.sampled_from(["q", "b"]))
def test_any_encoded_word_decodes(text: str, charset: str, encoding: str) -> None:
    data = text.encode("utf-8", "surrogatepass")
    word = (base64.b64encode(data).decode() if encoding == "b"
            else "".join(f"={byte:02X}" for byte in data))
    parsed = parse_message(msg(f"Subject: =?{charset}?{encoding}?{word}?= end"))
    _assert_storable(parsed)
    assert parsed.subject.endswith("end")


def test_generated_corpus_parses_cleanly() -> None:
    for raw in generate_messages(60, seed=7):
        parsed = parse_message(raw)
        assert parsed.warnings == ()
        assert parsed.message_id and parsed.message_id.endswith(".example.test>")
        assert parsed.from_ and parsed.to and parsed.date is not None
        assert parsed.text and parsed.snippet
        assert parsed.has_attachments == bool(parsed.attachments)
