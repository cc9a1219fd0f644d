# The OCI images, one per entry of nix/images.json (through nix/image-config.nix), built with
# dockerTools.buildLayeredImage into docker-archive tarballs (.tar.gz) that skopeo pushes as
# they are.
#
# Each file of an image is a store path of its own holding only that file, at its image path.
# buildLayeredImage makes one layer per store path, so the CA bundle and passwd/group layers are
# the same bytes in all three images (pulled once per host), and links each described path at
# the image root to its store copy. Nothing else goes in: no shell, no libc, no coreutils.
{
  pkgs,
  lib,
  # nix/image-config.nix, already applied
  images,
  # package name -> derivation with bin/<package> (the static binaries)
  binaries,
  # The tag written into the archive; pushes name their own tag, so this is informative only.
  tag,
}:
let
  # Files identical across images get identical derivations, hence one store path and one layer.
  fileSource = image: kind: {
    binary = {
      from = "${binaries.${image.package}}/bin/${image.package}";
      mode = "0555";
    };
    ca-bundle = {
      from = "${pkgs.cacert}/etc/ssl/certs/ca-bundle.crt";
      mode = "0444";
    };
    passwd = {
      from = pkgs.writeText "nton-passwd" image.passwd;
      mode = "0444";
    };
    group = {
      from = pkgs.writeText "nton-group" image.group;
      mode = "0444";
    };
  }.${kind};

  # A store path with one file at `path` (an absolute path inside the image).
  placeFile =
    image: path: kind:
    let
      source = fileSource image kind;
      # Store names allow [A-Za-z0-9+._?=-]: "/etc/ssl/certs/x.crt" -> "etc-ssl-certs-x.crt".
      storeName = "nton-image-" + lib.replaceStrings [ "/" ] [ "-" ] (lib.removePrefix "/" path);
    in
    pkgs.runCommand storeName { } ''
      install -D -m ${source.mode} ${source.from} "$out${path}"
    '';

  imageFor =
    image:
    pkgs.dockerTools.buildLayeredImage {
      inherit (image) name config;
      inherit tag;
      contents = lib.mapAttrsToList (placeFile image) image.files;
    };
in
lib.mapAttrs (_name: imageFor) images
