"""The PEP 517 build backend of the coppice package: a platform wheel that carries libcoppice and
the shared libraries it needs beyond glibc and the C++ runtime, bundled the way `auditwheel
repair` does.

- libcoppice.so.0 comes from $COPPICE_LIBRARY when set, else from the repository's
  dist/lib (`make lib`); it goes to coppice/libcoppice.so.0.
- Every library it loads (`ldd`) that is not part of glibc, libstdc++ or libgcc_s (OpenBLAS,
  libgfortran, libquadmath, libomp or libgomp, zlib) is copied to coppice/_libs under a name
  carrying a hash of its contents (libopenblas-0a1b2c3d.so.0), so that it never clashes with
  another copy loaded in the same process; the NEEDED entries and SONAMEs are renamed to match
  and the RUNPATH of every library is set to $ORIGIN-relative folders (`patchelf`).
- The wheel is tagged manylinux_2_<N>_<arch>, N the newest glibc symbol version any of its
  libraries needs.

Nothing is written into the source tree: the wheel is assembled in a temporary folder and
written as a zip to the folder pip asks for. No build dependencies (nothing is fetched).
"""

from __future__ import annotations

import base64
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

SOURCE = Path(__file__).resolve().parent.parent  # bindings/python
REPOSITORY = SOURCE.parent.parent
LIBRARY_NAME = "libcoppice.so.0"
BUNDLE_FOLDER = "_libs"

# Provided by every Linux system the wheel targets (the manylinux policies' libraries we link):
# never bundled.
SYSTEM_LIBRARIES = re.compile(
    r"^(linux-vdso|linux-gate|ld-linux[-\w]*|libc|libm|libdl|librt|libpthread|libresolv|libutil"
    r"|libstdc\+\+|libgcc_s)\.so"
)


class BuildError(RuntimeError):
    pass


def get_requires_for_build_wheel(config_settings=None):
    return [] if sys.version_info >= (3, 11) else ["tomli"]


def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    project = _project()
    dist_info = Path(metadata_directory) / _dist_info(project)
    dist_info.mkdir(parents=True, exist_ok=True)
    (dist_info / "METADATA").write_text(_metadata(project), encoding="utf-8")
    return dist_info.name


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    project = _project()
    library = _find_library()
    with tempfile.TemporaryDirectory(prefix="coppice-wheel-") as scratch:
        package = Path(scratch) / "coppice"
        shutil.copytree(
            SOURCE / "coppice", package, ignore=shutil.ignore_patterns("__pycache__", "*.so*")
        )
        glibc = _bundle(library, package)
        tag = f"py3-none-manylinux_{glibc[0]}_{glibc[1]}_{platform.machine()}"
        dist_info = Path(scratch) / _dist_info(project)
        dist_info.mkdir()
        (dist_info / "METADATA").write_text(_metadata(project), encoding="utf-8")
        (dist_info / "WHEEL").write_text(
            "Wheel-Version: 1.0\nGenerator: coppice_wheel\nRoot-Is-Purelib: false\n"
            f"Tag: {tag}\n",
            encoding="utf-8",
        )
        name = f"{project['name']}-{project['version']}-{tag}.whl"
        _write_wheel(Path(wheel_directory) / name, Path(scratch), dist_info.name)
    return name


def _project() -> dict:
    if sys.version_info >= (3, 11):
        import tomllib
    else:
        import tomli as tomllib
    with open(SOURCE / "pyproject.toml", "rb") as f:
        return tomllib.load(f)["project"]


def _dist_info(project: dict) -> str:
    return f"{project['name']}-{project['version']}.dist-info"


def _metadata(project: dict) -> str:
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {project['name']}",
        f"Version: {project['version']}",
        f"Summary: {project.get('description', '')}",
        f"Requires-Python: {project.get('requires-python', '>=3')}",
    ]
    lines += [f"Requires-Dist: {d}" for d in project.get("dependencies", [])]
    readme = SOURCE / project.get("readme", "README.md")
    lines.append("Description-Content-Type: text/markdown")
    return "\n".join(lines) + "\n\n" + readme.read_text(encoding="utf-8")


def _find_library() -> Path:
    override = os.environ.get("COPPICE_LIBRARY")
    path = Path(override) if override else REPOSITORY / "dist" / "lib" / LIBRARY_NAME
    if not path.is_file():
        where = "COPPICE_LIBRARY" if override else "the repository's dist/lib"
        raise BuildError(
            f"coppice wheel: {path} ({where}) does not exist; build it with `make lib` in the "
            "repository, or set COPPICE_LIBRARY to a built libcoppice.so.0"
        )
    return path.resolve()


def _run(*command: str) -> str:
    try:
        return subprocess.run(command, check=True, capture_output=True, text=True).stdout
    except FileNotFoundError:
        raise BuildError(
            f"coppice wheel: `{command[0]}` is missing (scripts/install-deps.sh installs it)"
        ) from None
    except subprocess.CalledProcessError as error:
        raise BuildError(f"coppice wheel: {' '.join(command)} failed: {error.stderr}") from None


def _dependencies(library: Path) -> dict[str, Path]:
    """NEEDED name → resolved path of every library `library` loads, directly or not."""
    found = {}
    for line in _run("ldd", str(library)).splitlines():
        match = re.match(r"\s*(\S+) => (\S+) \(", line)
        if match:
            found[match.group(1)] = Path(match.group(2))
        elif "not found" in line:
            raise BuildError(f"coppice wheel: {library}: {line.strip()}")
    return found


def _needed(library: Path) -> list[str]:
    output = _run("patchelf", "--print-needed", str(library))
    return [name for name in output.split() if name]


def _hashed_name(soname: str, path: Path) -> str:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()[:8]
    stem, _, suffix = soname.partition(".so")
    return f"{stem}-{digest}.so{suffix}"


def _bundle(library: Path, package: Path) -> tuple[int, int]:
    """Copies libcoppice and its non-system dependencies into `package`, renames and relinks
    them; returns the newest glibc symbol version they need."""
    bundled = {
        soname: path
        for soname, path in _dependencies(library).items()
        if not SYSTEM_LIBRARIES.match(soname)
    }
    folder = package / BUNDLE_FOLDER
    folder.mkdir()
    renamed = {soname: _hashed_name(soname, path) for soname, path in bundled.items()}
    copies = []
    for soname, path in bundled.items():
        copy = folder / renamed[soname]
        shutil.copyfile(path, copy)
        os.chmod(copy, 0o755)
        _run("patchelf", "--set-soname", renamed[soname], str(copy))
        _run("patchelf", "--set-rpath", "$ORIGIN", str(copy))
        copies.append(copy)
    main = package / LIBRARY_NAME
    shutil.copyfile(library, main)
    os.chmod(main, 0o755)
    _run("patchelf", "--set-rpath", f"$ORIGIN/{BUNDLE_FOLDER}", str(main))
    for elf in [main] + copies:
        for needed in _needed(elf):
            if needed in renamed:
                _run("patchelf", "--replace-needed", needed, renamed[needed], str(elf))
    # What the bundle needs now must come from the bundle or from the system list.
    for elf in [main] + copies:
        for soname, path in _dependencies(elf).items():
            inside = folder in path.parents or path == main
            if not inside and not SYSTEM_LIBRARIES.match(soname):
                raise BuildError(f"coppice wheel: {elf.name} still loads {soname} from {path}")
    versions = set()
    for elf in [main] + copies:
        versions.update(re.findall(r"GLIBC_2\.(\d+)", _run("objdump", "-T", str(elf))))
    return (2, max((int(v) for v in versions), default=17))


def _record_line(path: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{path},sha256={digest},{len(data)}"


def _write_wheel(target: Path, root: Path, dist_info: str) -> None:
    records = []
    partial = target.with_name(target.name + ".part")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as wheel:
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            name = path.relative_to(root).as_posix()
            data = path.read_bytes()
            info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = (path.stat().st_mode & 0o777 | 0o100000) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            wheel.writestr(info, data)
            records.append(_record_line(name, data))
        records.append(f"{dist_info}/RECORD,,")
        wheel.writestr(
            zipfile.ZipInfo(f"{dist_info}/RECORD", date_time=(2020, 1, 1, 0, 0, 0)),
            "\n".join(records) + "\n",
            compress_type=zipfile.ZIP_DEFLATED,
        )
    partial.replace(target)
