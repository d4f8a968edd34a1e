#!/usr/bin/python3
"""Builds the model's sub-vocabulary of the RWKV World tokenizer (issue #4).

    /usr/bin/python3 scripts/train/build_vocab.py /work/shared/tokenizers/rwkv_vocab_v20230424.txt \\
        --train build-train/train.txt --out build-train/vocab.txt --size 12288

1. Checks the greedy tokenizer against the World golden vectors (refuses to go on otherwise).
2. Tokenizes train.txt in one go with the full World vocab and counts the tokens.
3. Keeps all 256 single bytes plus the most frequent multi-byte tokens (ties: lower World id
   first) so that there are `size` ids including id 0 = end-of-text.
4. Renumbers densely: ids 1..256 are the bytes 0x00..0xFF (id = byte + 1, as in World), then the
   kept multi-byte tokens in World id order. Writes them in the World file format
   (`<id> <literal> <byte_len>`, str repr when valid UTF-8, bytes repr otherwise) plus
   OUT.json with the World id of every sub-vocabulary id.

The sub-vocabulary is used with the same greedy longest match, so it re-tokenizes text
differently from the full vocabulary; that is intended (the model is trained on it).
"""

import argparse
import collections
import json
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from world_vocab import GreedyTokenizer, VocabError, check_golden, file_sha256, load_vocab, write_vocab  # noqa: E402

DEFAULT_GOLDEN = "/work/shared/tokenizers/golden/rwkv_world_v20230424_golden.json"


def select(world, counts, size):
    """Returns the World ids of the sub-vocabulary, in sub-vocabulary id order (1..size-1)."""
    singles = [i for i in sorted(world) if len(world[i]) == 1]
    if len(singles) != 256 or [world[i][0] for i in singles] != list(range(256)):
        raise VocabError("World ids 1..256 are not the single bytes 0x00..0xFF in order")
    n_multi = size - 1 - 256
    if n_multi < 0:
        raise VocabError("size %d is below 257 (id 0 + 256 bytes)" % size)
    ranked = sorted((i for i in counts if len(world[i]) > 1), key=lambda i: (-counts[i], i))
    if len(ranked) < n_multi:
        raise VocabError("the corpus uses only %d multi-byte World tokens; size %d needs %d" %
                         (len(ranked), size, n_multi))
    return singles + sorted(ranked[:n_multi])


def main(argv=None):
    here = os.path.dirname(os.path.abspath(__file__))
    default_dir = os.path.normpath(os.path.join(here, "..", "..", "build-train"))
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("world_vocab", help="RWKV World vocab file (rwkv_vocab_v20230424.txt)")
    p.add_argument("--train", default=os.path.join(default_dir, "train.txt"), help="training text")
    p.add_argument("--heldout", default=None, help="held-out text, only for statistics (default: next to --train)")
    p.add_argument("--out", default=None, help="sub-vocab file to write (default: vocab.txt next to --train)")
    p.add_argument("--size", type=int, default=12288, help="ids including 0 (default 12288)")
    p.add_argument("--golden", default=DEFAULT_GOLDEN, help="World golden ids (JSON) to check first")
    args = p.parse_args(argv)
    out = args.out or os.path.join(os.path.dirname(os.path.abspath(args.train)), "vocab.txt")
    heldout = args.heldout or os.path.join(os.path.dirname(os.path.abspath(args.train)), "heldout.txt")

    try:
        world = load_vocab(args.world_vocab)
        full = GreedyTokenizer(world)
    except (OSError, VocabError) as e:
        print("build_vocab: %s" % e, file=sys.stderr)
        return 1
    if args.golden and os.path.exists(args.golden):
        passed, failed, first = check_golden(full, args.golden)
        print("golden World vectors: %d passed, %d failed" % (passed, failed))
        if failed:
            print("build_vocab: tokenizer disagrees with %s: %s" % (args.golden, first), file=sys.stderr)
            return 1
    else:
        print("golden World vectors: %s not found, not checked" % args.golden)

    with open(args.train, "rb") as f:
        train = f.read()
    world_ids = full.encode(train)
    counts = collections.Counter(world_ids)
    try:
        kept = select(world, counts, args.size)
    except VocabError as e:
        print("build_vocab: %s" % e, file=sys.stderr)
        return 1
    sub = {new_id: world[w] for new_id, w in enumerate(kept, start=1)}
    write_vocab(out, sub)
    covered = sum(counts[w] for w in kept)
    print("World: %d distinct tokens used in %d train tokens; kept %d + id 0 (covering %.2f%% of them)" %
          (len(counts), len(world_ids), len(kept), 100.0 * covered / len(world_ids)))

    sub_tok = GreedyTokenizer(sub)
    stats = {}
    for name, path in (("train", args.train), ("heldout", heldout)):
        if not os.path.exists(path):
            continue
        with open(path, "rb") as f:
            data = f.read()
        n_full = len(world_ids) if name == "train" else len(full.encode(data))
        n_sub = len(sub_tok.encode(data))
        stats[name] = {"bytes": len(data), "world_tokens": n_full, "sub_tokens": n_sub}
        print("%-7s %9d bytes: World %8d tokens (%.2f B/tok), sub-vocab %8d tokens (%.2f B/tok)" %
              (name, len(data), n_full, len(data) / n_full, n_sub, len(data) / n_sub))

    manifest = {
        "n_vocab": args.size,
        "world_vocab_sha256": file_sha256(args.world_vocab),
        "train_sha256": file_sha256(args.train),
        "vocab_sha256": file_sha256(out),
        "world_id_of": [0] + kept,
        "stats": stats,
    }
    with open(out + ".json.tmp", "w", encoding="utf-8") as f:
        json.dump(manifest, f)
        f.write("\n")
    os.replace(out + ".json.tmp", out + ".json")
    print("wrote %s (%d lines, ids 1..%d) and %s.json" % (out, len(sub), len(sub), out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
