"""Checks one image built by nix/images.nix against its description (nix/image-config.nix).

Usage: check-image.py IMAGE.tar[.gz] EXPECTED.json

IMAGE is the docker-archive dockerTools.buildLayeredImage writes; EXPECTED is the image's
entry of nix/image-config.nix as JSON. The image passes when:
- its OCI config is exactly the expected one;
- outside /nix/store it holds the described files (each a link into the store, or a file)
  and the directories leading to them, nothing else;
- every store path in it is the copy of one described file and holds only that file, so
  nothing was pulled in by a reference (a libc, a shell, a toolchain);
- the binary is a static ELF (no program interpreter, no needed library) with mode 0555,
  the other files are mode 0444;
- no shell is anywhere in it.
This is what tests/tests/image_contract.rs runs with bwrap, checked on the real image.
"""

import json
import posixpath
import struct
import sys
import tarfile

SHELLS = {"sh", "bash", "dash", "ash", "zsh", "busybox"}


def fail(message):
    print(f"check-image: {message}", file=sys.stderr)
    sys.exit(1)


def norm(name):
    """A tar member name as a path relative to the image root ("" for the root itself)."""
    while name.startswith("./"):
        name = name[2:]
    name = name.strip("/")
    return "" if name == "." else name


def read_image(path):
    """Returns (config json, {relative path: (TarInfo, bytes or None)}) of the merged layers."""
    with tarfile.open(path, mode="r:*") as outer:
        manifest = json.load(outer.extractfile("manifest.json"))
        if len(manifest) != 1:
            fail(f"expected one image in the archive, found {len(manifest)}")
        image_json = json.load(outer.extractfile(manifest[0]["Config"]))
        entries = {}
        for layer_name in manifest[0]["Layers"]:
            with tarfile.open(fileobj=outer.extractfile(layer_name), mode="r:") as layer:
                for info in layer:
                    data = layer.extractfile(info).read() if info.isfile() else None
                    entries[norm(info.name)] = (info, data)
        entries.pop("", None)
        return image_json, manifest[0]["Layers"], entries


def resolve(entries, name, depth=0):
    """Follows symlinks (absolute, into the image) to the entry they name."""
    if depth > 8:
        fail(f"{name}: too many symlinks")
    if name not in entries:
        fail(f"/{name} is missing from the image")
    info, _ = entries[name]
    if info.issym():
        target = info.linkname
        if not target.startswith("/"):
            target = posixpath.normpath(posixpath.join(posixpath.dirname("/" + name), target))
        return resolve(entries, norm(target), depth + 1)
    return name


def elf_is_static(data):
    if data[:4] != b"\x7fELF" or data[4] != 2 or data[5] != 1:
        return False, "not a 64-bit little-endian ELF"
    phoff, = struct.unpack_from("<Q", data, 32)
    phentsize, phnum = struct.unpack_from("<HH", data, 54)
    for index in range(phnum):
        header = phoff + index * phentsize
        kind, = struct.unpack_from("<I", data, header)
        offset, = struct.unpack_from("<Q", data, header + 8)
        filesz, = struct.unpack_from("<Q", data, header + 32)
        if kind == 3:  # PT_INTERP
            return False, "it names a program interpreter (dynamic loader)"
        if kind == 2:  # PT_DYNAMIC
            for at in range(offset, offset + filesz, 16):
                tag, = struct.unpack_from("<Q", data, at)
                if tag == 0:
                    break
                if tag == 1:  # DT_NEEDED
                    return False, "it needs a shared library"
    return True, ""


def main():
    if len(sys.argv) != 3:
        fail(__doc__)
    image_json, layers, entries = read_image(sys.argv[1])
    with open(sys.argv[2]) as f:
        expected = json.load(f)
    name = expected["name"]

    if image_json.get("config") != expected["config"]:
        fail(f"{name}: config is\n{json.dumps(image_json.get('config'), indent=2)}\n"
             f"expected\n{json.dumps(expected['config'], indent=2)}")
    if image_json.get("os") != "linux":
        fail(f"{name}: os is {image_json.get('os')!r}")

    described = {norm(path): kind for path, kind in expected["files"].items()}
    wanted = set(described)
    for path in described:
        parent = posixpath.dirname(path)
        while parent:
            wanted.add(parent)
            parent = posixpath.dirname(parent)
    outside = {n for n in entries if n != "nix" and not n.startswith("nix/")}
    if outside != wanted:
        fail(f"{name}: outside /nix/store the image holds {sorted(outside)}, "
             f"expected {sorted(wanted)}")

    targets = {}
    for path, kind in described.items():
        target = resolve(entries, path)
        info, data = entries[target]
        if not info.isfile():
            fail(f"{name}: /{path} is not a regular file")
        mode = info.mode & 0o7777
        want = 0o555 if kind == "binary" else 0o444
        if mode != want:
            fail(f"{name}: /{path} has mode {mode:o}, expected {want:o}")
        if kind == "binary":
            static, why = elf_is_static(data)
            if not static:
                fail(f"{name}: /{path} is not a static binary: {why}")
        targets[path] = target

    store_paths = {"/".join(n.split("/")[:3]) for n in entries if n.count("/") >= 2 and n.startswith("nix/store/")}
    placed = {"/".join(t.split("/")[:3]) for t in targets.values() if t.startswith("nix/store/")}
    if store_paths != placed:
        fail(f"{name}: store paths beyond the described files: {sorted(store_paths - placed)}")
    for store_path in store_paths:
        files = [n for n, (i, _) in entries.items() if n.startswith(store_path + "/") and not i.isdir()]
        if len(files) != 1:
            fail(f"{name}: /{store_path} holds {files}, expected one file")

    shells = sorted(n for n in entries if posixpath.basename(n) in SHELLS)
    if shells:
        fail(f"{name}: the image has a shell: {shells}")

    sizes = ", ".join(f"/{p} {len(entries[t][1])} B" for p, t in sorted(targets.items()))
    print(f"check-image: {name}: {len(layers)} layers; {sizes}")


if __name__ == "__main__":
    main()
