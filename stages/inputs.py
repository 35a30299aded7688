"""Stage inputs: fingerprint every external input named in params by content (fairser.provenance).

python stages/inputs.py --out data/inputs [--params params.yaml]
Writes corpus.json, upstream.json, speaker.json, pseudo.json; always runs (dvc.yaml
always_changed), and unchanged inputs give byte-identical files, so nothing downstream reruns.
Reads params: preset, corpus (name, audio_dir, metadata_dir, labels_dir, manifest, speakers), features.upstream/revision,
speaker.model/revision, idi.pseudo_model/pseudo_revision.
"""

from pathlib import Path

from fairser import config, provenance, stage


def main() -> None:
    p = stage.parser(__doc__.splitlines()[0])
    p.add_argument("--out", required=True, type=Path, help="output folder (data/inputs)")
    args = p.parse_args()
    docs = provenance.write_inputs(args.out, config.load(args.params))
    audio = docs["corpus"]["audio_dir"]
    kind = "audio" if docs["corpus"]["corpus"] in ("emo-superb", "manifest") else "wav"
    shown = f", audio_dir {audio['files']} {kind} ({audio['bytes'] / 1e6:.0f} MB)" if audio else ""
    models = "; ".join(provenance.describe_model(docs[n]) for n in ("upstream", "speaker", "pseudo"))
    print(f"inputs: {docs['corpus']['corpus']}{shown}; {models} -> {args.out}")


if __name__ == "__main__":
    stage.run(main)
