#!/usr/bin/python3
"""Exports a trained model as BlinkDL-named F32 safetensors for `rwkv-edge convert` (issue #4).

    /usr/bin/python3 scripts/train/export.py build-train/run/checkpoint.pt build-train/model.safetensors

Tensors (raw BlinkDL values, as a .pth holds them; the importer applies exp(-exp(w)) and
GroupNorm eps 64e-5 for v5.2):
    emb.weight [V,C]; blocks.0.ln0.{weight,bias} [C]; blocks.N.ln1/ln2.{weight,bias} [C];
    blocks.N.att.time_mix_{k,v,r,g} [1,1,C]; att.time_decay [H,S] (raw w); att.time_faaaa [H,S];
    att.{receptance,key,value,output,gate}.weight [C,C] (out x in); att.ln_x.{weight,bias} [C];
    blocks.N.ffn.time_mix_{k,r} [1,1,C]; ffn.key.weight [F,C]; ffn.value.weight [C,F];
    ffn.receptance.weight [C,C]; ln_out.{weight,bias} [C]; head.weight [V,C].
"""

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from safetensors_io import write_safetensors  # noqa: E402


def export_model(model, path, extra_metadata=None):
    """Writes model.state_dict() (BlinkDL names already) as F32 safetensors."""
    import rwkv5
    metadata = {
        "format": "pt",
        # Tell rwkv-edge's importer explicitly what it would otherwise infer for F32 files.
        "rwkv_edge.layout": "blinkdl",
        "rwkv_edge.group_norm_epsilon": repr(rwkv5.GN_EPS),
        "rwkv_edge.source": "scripts/train (RWKV-5.2 trained in the project)",
    }
    metadata.update(extra_metadata or {})
    tensors = [(name, t.detach().float().cpu().contiguous().numpy()) for name, t in model.state_dict().items()]
    write_safetensors(path, tensors, metadata)
    return tensors


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("checkpoint", help="trainer checkpoint (RUN/checkpoint.pt)")
    p.add_argument("output", help="safetensors file to write")
    args = p.parse_args(argv)
    import torch
    from rwkv5 import RWKV5, Config
    ckpt = torch.load(args.checkpoint, map_location="cpu")
    model = RWKV5(Config(**ckpt["config"]))
    model.load_state_dict(ckpt["model"])
    tensors = export_model(model, args.output, {"train.step": str(ckpt["step"])})
    print("wrote %s: %d tensors, F32, step %d" % (args.output, len(tensors), ckpt["step"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
