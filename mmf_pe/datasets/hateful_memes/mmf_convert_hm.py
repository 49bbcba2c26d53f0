"""F17: rc10's `mmf_convert_hm` console script runs `mmf_pe convert-hm` (this package's `convert.py`).

Kept as a patch of `mmf_cli.hm_convert.main`: the console script is MMF's own (rc10's entry point
`mmf_convert_hm = mmf_cli.hm_convert:main`) and reads no config or registry before it acts, so nothing the plugin
registers can reach it.
Installed by the plugin's hook table (`mmf_pe.mmf_patches`) when `mmf_cli.hm_convert` is imported.
"""
import argparse
import sys


def patch_hm_convert(module):
    """F17. `AssertionError: Checksum of downloaded file does not match the expected checksum` on the Phase-2 zip
    distributed today; with `--bypass_checksum 1`: `dev.jsonl doesn't exist`, after the user's zip was moved into the
    data folder.

    Cause: rc10's `HMConverter` lists only Phase-1 checksums and files, and `move`s the zip before unzipping it. Fix:
    `mmf_convert_hm` (its `main`) runs `mmf_pe convert-hm` with rc10's flags (`--zip_file` a zip or an extracted folder,
    `--password`, `--mmf_data_folder`, `--bypass_checksum 1`); the zip is only read (`--move` is accepted and ignored,
    as the zip stays where it is). Test: test_f17_*.
    """
    original = module.main

    def main():
        from mmf_pe.datasets.hateful_memes import convert

        parser = argparse.ArgumentParser(prog="mmf_convert_hm", description="Hateful Memes -> MMF's layout (mmf_pe)")
        parser.add_argument("--zip_file", required=True, help="the challenge zip, or an extracted folder")
        parser.add_argument("--password", help="the zip's password")
        parser.add_argument("--mmf_data_folder", help="MMF's data folder (default: env.data_dir)")
        parser.add_argument("--bypass_checksum", type=int, default=0, help="1: accept an unpublished sha256")
        parser.add_argument("--move", type=int, default=0, help="ignored: the zip is never moved")
        args = parser.parse_args()
        if args.move:
            print("mmf_convert_hm: --move ignored, the zip stays where it is (it is only read)")
        try:
            convert.convert(args.zip_file, args.mmf_data_folder, args.password, bool(args.bypass_checksum))
        except convert.ConversionError as error:
            sys.exit(f"mmf_convert_hm: {error}")

    main.__wrapped__ = original
    module.main = main
