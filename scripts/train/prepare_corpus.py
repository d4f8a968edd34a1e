#!/usr/bin/python3
"""Builds the public-domain English training corpus from Debian packages (issue #4).

    /usr/bin/python3 scripts/train/prepare_corpus.py --out build-train

Writes OUT/train.txt, OUT/heldout.txt and OUT/corpus.json. Installs nothing: if a package is
missing it says which ones to `apt-get install` and exits with status 2.

Sources (all public domain; see docs/TRAINING.md for the licence statements):

| name   | package (Debian 12)            | what                                               |
|--------|--------------------------------|----------------------------------------------------|
| kjv    | bible-kjv (+ bible-kjv-text)    | King James Version, via the package's `bible` tool |
| web    | sword-text-web                 | World English Bible with Deuterocanon (SWORD zText) |
| devil  | dict-devil                     | Ambrose Bierce, The Devil's Dictionary (dictd)      |
| jargon | jargon-text                    | The Jargon File 4.4.7 (plain text)                  |

File format (both outputs): documents separated by one empty line ("\\n\\n"), no empty line
inside a document, file ends with "\\n". A document is a Bible chapter (title line
"Genesis 1", then one verse per line for the KJV, one paragraph per line for the WEB), a
dictionary entry, or a Jargon File chapter or entry. Paragraphs are unwrapped to one line;
verse and preformatted blocks keep their lines.

Held-out split: a document is held out iff crc32(key) % 20 == 0, where the key names the
passage, not the source (the same chapter of the KJV and the WEB share the key "bible:Gen.1", so
a held-out chapter is held out in both translations). Deterministic; about 5 %.
"""

import argparse
import collections
import gzip
import hashlib
import json
import os
import re
import shutil
import struct
import subprocess
import sys
import zlib

HELDOUT_MODULUS = 20

KJV_DATA = "/usr/lib/bible.data"
WEB_DIR = "/usr/share/sword/modules/texts/ztext/engWEB2015eb"
DEVIL_INDEX = "/usr/share/dictd/devil.index"
DEVIL_DICT = "/usr/share/dictd/devil.dict.dz"
JARGON_TXT = "/usr/share/doc/jargon-text/jargon.txt.gz"

# (name, packages to install, files or programs that must exist)
SOURCES = [
    ("kjv", ["bible-kjv", "bible-kjv-text"], [KJV_DATA, "bible"]),
    ("web", ["sword-text-web"], [WEB_DIR + "/ot.bzz", WEB_DIR + "/nt.bzz"]),
    ("devil", ["dict-devil"], [DEVIL_INDEX, DEVIL_DICT]),
    ("jargon", ["jargon-text"], [JARGON_TXT]),
]

# The 66 books of the KJV in order: OSIS id (as used by SWORD) and English name.
BOOKS_66 = [
    ("Gen", "Genesis"), ("Exod", "Exodus"), ("Lev", "Leviticus"), ("Num", "Numbers"),
    ("Deut", "Deuteronomy"), ("Josh", "Joshua"), ("Judg", "Judges"), ("Ruth", "Ruth"),
    ("1Sam", "1 Samuel"), ("2Sam", "2 Samuel"), ("1Kgs", "1 Kings"), ("2Kgs", "2 Kings"),
    ("1Chr", "1 Chronicles"), ("2Chr", "2 Chronicles"), ("Ezra", "Ezra"), ("Neh", "Nehemiah"),
    ("Esth", "Esther"), ("Job", "Job"), ("Ps", "Psalms"), ("Prov", "Proverbs"),
    ("Eccl", "Ecclesiastes"), ("Song", "Song of Solomon"), ("Isa", "Isaiah"), ("Jer", "Jeremiah"),
    ("Lam", "Lamentations"), ("Ezek", "Ezekiel"), ("Dan", "Daniel"), ("Hos", "Hosea"),
    ("Joel", "Joel"), ("Amos", "Amos"), ("Obad", "Obadiah"), ("Jonah", "Jonah"),
    ("Mic", "Micah"), ("Nah", "Nahum"), ("Hab", "Habakkuk"), ("Zeph", "Zephaniah"),
    ("Hag", "Haggai"), ("Zech", "Zechariah"), ("Mal", "Malachi"), ("Matt", "Matthew"),
    ("Mark", "Mark"), ("Luke", "Luke"), ("John", "John"), ("Acts", "Acts"),
    ("Rom", "Romans"), ("1Cor", "1 Corinthians"), ("2Cor", "2 Corinthians"), ("Gal", "Galatians"),
    ("Eph", "Ephesians"), ("Phil", "Philippians"), ("Col", "Colossians"),
    ("1Thess", "1 Thessalonians"), ("2Thess", "2 Thessalonians"), ("1Tim", "1 Timothy"),
    ("2Tim", "2 Timothy"), ("Titus", "Titus"), ("Phlm", "Philemon"), ("Heb", "Hebrews"),
    ("Jas", "James"), ("1Pet", "1 Peter"), ("2Pet", "2 Peter"), ("1John", "1 John"),
    ("2John", "2 John"), ("3John", "3 John"), ("Jude", "Jude"), ("Rev", "Revelation"),
]
BOOK_NAMES = dict(BOOKS_66)

Doc = collections.namedtuple("Doc", "source key text")


class CorpusError(Exception):
    pass


def _have(path_or_program):
    if path_or_program.startswith("/"):
        return os.path.exists(path_or_program)
    return shutil.which(path_or_program) is not None


def _clean_lines(lines):
    """Collapses whitespace inside each line and drops empty lines (documents have none)."""
    out = []
    for line in lines:
        line = re.sub(r"[ \t\r\f\v\u00a0]+", " ", line).strip()
        if line:
            out.append(line)
    return out


# ---- KJV: the `bible` program prints "Ge1:1 In the beginning ..." one verse per line. ----

def read_kjv():
    text = subprocess.run(["bible", "-f", "Gen1:1-Rev22:21"], check=True, stdout=subprocess.PIPE,
                          stdin=subprocess.DEVNULL).stdout.decode("utf-8")
    chapters = collections.OrderedDict()  # (abbrev, chapter) -> verses
    abbrevs = []
    for line in text.splitlines():
        m = re.match(r"^(\S+?)(\d+):(\d+) (.*)$", line)
        if m is None:
            if line.strip():
                raise CorpusError("bible: unexpected line %r" % line[:60])
            continue
        abbrev, chapter = m.group(1), int(m.group(2))
        if not abbrevs or abbrevs[-1] != abbrev:
            abbrevs.append(abbrev)
        chapters.setdefault((abbrev, chapter), []).append(m.group(4))
    if len(abbrevs) != len(BOOKS_66) or len(set(abbrevs)) != len(BOOKS_66):
        raise CorpusError("bible: expected 66 books in order, found %d" % len(abbrevs))
    osis = {a: BOOKS_66[i][0] for i, a in enumerate(abbrevs)}
    docs = []
    for (abbrev, chapter), verses in chapters.items():
        book = osis[abbrev]
        lines = ["%s %d" % (BOOK_NAMES[book], chapter)] + _clean_lines(verses)
        docs.append(Doc("kjv", "bible:%s.%d" % (book, chapter), "\n".join(lines)))
    return docs


# ---- WEB: SWORD zText module (OSIS markup), read without libsword. ----
#
# ot/nt.bzs: blocks, 12 bytes each (u32 offset, u32 compressed size, u32 size) into .bzz (zlib).
# ot/nt.bzv: entries, 10 bytes each (u32 block, u32 offset, u16 size) into the inflated block,
# in versification order (testament/book/chapter headings, then verses). Chapters are marked in
# the text by <chapter osisID="Gen.1" sID="Gen.1"/>; books by <div osisID="Gen" type="book">.

def _ztext_entries(directory, testament):
    with open(os.path.join(directory, testament + ".bzs"), "rb") as f:
        bzs = f.read()
    with open(os.path.join(directory, testament + ".bzv"), "rb") as f:
        bzv = f.read()
    with open(os.path.join(directory, testament + ".bzz"), "rb") as f:
        bzz = f.read()
    blocks = [struct.unpack_from("<III", bzs, i) for i in range(0, len(bzs) - 11, 12)]
    inflated = {}
    seen = set()
    for i in range(0, len(bzv) - 9, 10):
        block, offset, size = struct.unpack_from("<IIH", bzv, i)
        # Linked verses (one text for a verse range) repeat the same entry: emit it once.
        if size == 0 or (block, offset, size) in seen:
            continue
        seen.add((block, offset, size))
        if block not in inflated:
            start, csize, _ = blocks[block]
            inflated[block] = zlib.decompress(bzz[start:start + csize])
        yield inflated[block][offset:offset + size].decode("utf-8")


_OSIS_DROP = re.compile(r"<note\b[^>]*>.*?</note>|<title\b[^>]*>.*?</title>", re.S)
_OSIS_BREAK = re.compile(r"<div\b[^>]*type=\"x-p\"[^>]*sID=[^>]*>|<div\b[^>]*sID=[^>]*type=\"x-p\"[^>]*>"
                         r"|<lb\b[^>]*>|<lg\b[^>]*sID=[^>]*>|<l\b[^>]*sID=[^>]*>|<item\b[^>]*>")
_OSIS_TAG = re.compile(r"<[^>]*>")


def _drop_note(m):
    # The module puts a footnote where the source had the space after a word
    # ("knew<note>..</note><w>Eve</w>"): keep a space between two words, none before punctuation.
    before = m.string[m.start() - 1:m.start()]
    after = _OSIS_TAG.sub("", m.string[m.end():m.end() + 200])[:1]
    if before and not before.isspace() and (after.isalnum() or after in "\u201c\u2018("):
        return " "
    return ""


def _osis_to_lines(markup):
    s = _OSIS_DROP.sub(_drop_note, markup)
    s = _OSIS_BREAK.sub("\n", s)
    s = _OSIS_TAG.sub("", s)
    for entity, char in (("&lt;", "<"), ("&gt;", ">"), ("&quot;", '"'), ("&apos;", "'"), ("&amp;", "&")):
        s = s.replace(entity, char)
    return _clean_lines(s.split("\n"))


def read_web():
    try:
        return _read_web()
    except (zlib.error, struct.error, UnicodeDecodeError, IndexError) as e:
        raise CorpusError("cannot read the SWORD module in %s: %s" % (WEB_DIR, e))


def _read_web():
    names = {}  # OSIS book id -> short name from the module's toc2 milestones
    chapters = collections.OrderedDict()  # "Gen.1" -> [markup]
    current_book, current = None, None
    chapter_re = re.compile(r"<chapter\b[^>]*\bsID=\"([^\"]+)\"[^>]*/>")
    for testament in ("ot", "nt"):
        for markup in _ztext_entries(WEB_DIR, testament):
            for m in re.finditer(r"<div\b[^>]*\bosisID=\"([^\"]+)\"[^>]*type=\"book\"", markup):
                current_book = m.group(1)
            for m in re.finditer(r"<milestone\b[^>]*n=\"([^\"]+)\"[^>]*type=\"x-usfm-toc2\"", markup):
                if current_book is not None:
                    names.setdefault(current_book, m.group(1))
            pos = 0
            for m in chapter_re.finditer(markup):
                if current is not None:
                    chapters[current].append(markup[pos:m.start()])
                current = m.group(1)
                if current in chapters:
                    raise CorpusError("web: chapter %s appears twice" % current)
                chapters[current] = []
                pos = m.end()
            if current is not None:
                chapters[current].append(markup[pos:])
    docs = []
    for osis_id, parts in chapters.items():
        book, _, chapter = osis_id.rpartition(".")
        lines = _osis_to_lines(" ".join(parts))
        if not lines:
            continue
        title = "%s %s" % (BOOK_NAMES.get(book) or names.get(book, book), chapter)
        docs.append(Doc("web", "bible:%s" % osis_id, "\n".join([title] + lines)))
    return docs


# ---- The Devil's Dictionary: dictd index (word, base64 offset, base64 length) + dictzip. ----

_B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"


def _dictd_number(s):
    n = 0
    for c in s:
        n = n * 64 + _B64.index(c)
    return n


def _unwrap_blocks(lines, verse_indent):
    """Blank-line separated blocks -> output lines. Prose is unwrapped to one line per paragraph
    (a line indented by >= verse_indent starts a new paragraph); blocks whose lines are all
    indented are verse/preformatted and keep their lines."""
    out = []
    block = []
    for line in lines + [""]:
        if line.strip():
            block.append(line.rstrip())
            continue
        if not block:
            continue
        indents = [len(l) - len(l.lstrip(" ")) for l in block]
        if min(indents) >= verse_indent and len(block) > 1:
            out.extend(l.strip() for l in block)
        else:
            para = []
            for l, ind in zip(block, indents):
                if ind >= verse_indent and para:
                    out.append(" ".join(para))
                    para = []
                para.append(l.strip())
            out.append(" ".join(para))
        block = []
    return _clean_lines(out)


def read_devil():
    with gzip.open(DEVIL_DICT, "rb") as f:
        data = f.read()
    docs = []
    with open(DEVIL_INDEX, encoding="utf-8") as f:
        for line in f:
            word, offset, length = line.rstrip("\n").split("\t")
            if word.startswith("00database") or word.startswith("00-database"):
                continue
            start, size = _dictd_number(offset), _dictd_number(length)
            entry = data[start:start + size].decode("utf-8")
            lines = _unwrap_blocks(entry.split("\n"), verse_indent=4)
            if lines:
                docs.append(Doc("devil", "devil:%s" % word, "\n".join(lines)))
    return docs


# ---- The Jargon File: text rendering of the DocBook source. ----

def _jargon_blocks(lines):
    """Like _unwrap_blocks for a 3-space indented text: prose blocks (every line indented by
    exactly 3) are unwrapped; any other block is preformatted and keeps its lines (common
    indent removed)."""
    out = []
    block = []
    for line in lines + [""]:
        if line.strip():
            block.append(line.rstrip())
            continue
        if not block:
            continue
        indents = [len(l) - len(l.lstrip(" ")) for l in block]
        if all(i == 3 for i in indents):
            out.append(" ".join(l.strip() for l in block))
        else:
            common = min(indents)
            out.extend(l[common:] for l in block)
        block = []
    return [l for l in out if l.strip()]


def read_jargon():
    with gzip.open(JARGON_TXT, "rt", encoding="utf-8") as f:
        lines = f.read().split("\n")
    docs = []
    # Front-matter chapters and appendices: "Chapter 1. Title" / "Appendix A. Title" at column 0,
    # up to the glossary and from the appendices to the bibliography (a list of books, skipped).
    heading = re.compile(r"^(Chapter\s\d+|Appendix\s[A-Z])\.\s(.+)$")
    entry_re = re.compile(r"^   :(.+?):(.*)$")
    section_re = re.compile(r"^  \S$")
    mode, title, body = None, None, []

    def flush():
        if mode == "chapter" and title is not None:
            text = _jargon_blocks(body)
            # A chapter opens with its table of contents (one-line paragraphs): drop it.
            while text and (text[0] == "Table of Contents" or len(text[0]) < 60 and not text[0].endswith(".")):
                text.pop(0)
            if text:
                docs.append(Doc("jargon", "jargon:%s" % title.split(".")[0], "\n".join([title] + text)))
        elif mode == "entry" and title is not None:
            text = _jargon_blocks(body)
            if text:
                docs.append(Doc("jargon", "jargon:%s" % title, "\n".join(text)))

    for line in lines:
        m = heading.match(line)
        if m:
            flush()
            mode, title, body = "chapter", re.sub(r"\s+", " ", line).strip(), []
            continue
        if line.strip() == "Glossary" and not line.startswith(" "):
            flush()
            mode, title, body = "index", None, []
            continue
        if line.strip() == "Bibliography" and not line.startswith(" "):
            flush()
            mode, title, body = None, None, []
            continue
        if mode in ("index", "entry"):
            if section_re.match(line):
                flush()
                mode, title, body = "index", None, []
                continue
            m = entry_re.match(line)
            if m:
                flush()
                mode, title = "entry", m.group(1)
                body = ["   " + m.group(1) + ":" + m.group(2), ""]
                continue
        if mode in ("chapter", "entry"):
            body.append(line)
    flush()
    return docs


READERS = {"kjv": read_kjv, "web": read_web, "devil": read_devil, "jargon": read_jargon}


def is_heldout(key):
    return zlib.crc32(key.encode("utf-8")) % HELDOUT_MODULUS == 0


def _write_docs(path, docs):
    tmp = path + ".tmp"
    with open(tmp, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n\n".join(d.text for d in docs))
        f.write("\n")
    os.replace(tmp, path)


def _sha256(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "build-train"),
                   help="output directory (default: <repo>/build-train)")
    p.add_argument("--sources", default="kjv,web,devil,jargon",
                   help="comma-separated subset of: %s (default: all)" % ",".join(READERS))
    args = p.parse_args(argv)

    names = [s for s in args.sources.split(",") if s]
    for n in names:
        if n not in READERS:
            p.error("unknown source %r" % n)
    missing = [pkg for name, pkgs, needs in SOURCES if name in names and not all(_have(x) for x in needs)
               for pkg in pkgs]
    if missing:
        print("prepare_corpus: missing Debian packages; install them with:\n"
              "    apt-get install -y %s" % " ".join(sorted(set(missing))), file=sys.stderr)
        return 2

    out = os.path.abspath(args.out)
    os.makedirs(out, exist_ok=True)
    train, heldout, stats = [], [], collections.OrderedDict()
    for name in names:
        try:
            docs = READERS[name]()
        except (CorpusError, OSError, subprocess.CalledProcessError) as e:
            print("prepare_corpus: %s: %s" % (name, e), file=sys.stderr)
            return 1
        s = stats.setdefault(name, {"docs_train": 0, "docs_heldout": 0, "bytes_train": 0, "bytes_heldout": 0})
        for d in docs:
            split = "heldout" if is_heldout(d.key) else "train"
            (heldout if split == "heldout" else train).append(d)
            s["docs_" + split] += 1
            s["bytes_" + split] += len(d.text.encode("utf-8")) + 2
        print("%-7s %5d docs train, %4d held out, %9d / %8d bytes" % (
            name, s["docs_train"], s["docs_heldout"], s["bytes_train"], s["bytes_heldout"]))

    train_path, heldout_path = os.path.join(out, "train.txt"), os.path.join(out, "heldout.txt")
    _write_docs(train_path, train)
    _write_docs(heldout_path, heldout)
    manifest = {
        "sources": stats,
        "heldout_rule": "crc32(key) %% %d == 0" % HELDOUT_MODULUS,
        "document_separator": "\\n\\n",
        "train_txt": {"bytes": os.path.getsize(train_path), "sha256": _sha256(train_path)},
        "heldout_txt": {"bytes": os.path.getsize(heldout_path), "sha256": _sha256(heldout_path)},
    }
    tmp = os.path.join(out, "corpus.json.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1)
        f.write("\n")
    os.replace(tmp, os.path.join(out, "corpus.json"))
    print("wrote %s (%d docs, %d bytes) and %s (%d docs, %d bytes)" % (
        train_path, len(train), manifest["train_txt"]["bytes"],
        heldout_path, len(heldout), manifest["heldout_txt"]["bytes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
