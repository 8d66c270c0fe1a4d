"""Parsing raw messages into plain values: the message parser and the text decoding it uses
(charsets, RFC 2047/2231 headers, dates, HTML to text, snippets). Runs in the parse worker
processes.

May import: only :mod:`..address_normalisation` and :mod:`..errors` of the core, and the
standard library. No ORM, no database: a parse process must not load them.
"""
