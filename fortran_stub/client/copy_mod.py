"""Build helper: copy icecorr_client.mod from the static library's private folder (meson does not install .mod)."""
import pathlib
import shutil
import sys

build_dir, out = pathlib.Path(sys.argv[1]), pathlib.Path(sys.argv[2])
found = sorted(build_dir.glob("*.p/icecorr_client.mod")) + sorted(build_dir.glob("icecorr_client.mod"))
if not found:
    sys.exit(f"icecorr_client.mod not found below {build_dir}")
shutil.copyfile(found[0], out)
