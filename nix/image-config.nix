# What each image is, computed from nix/images.json with builtins only (no nixpkgs), so that
# tests/tests/image_contract.rs can evaluate this file offline (`nix-instantiate --eval`) and
# check that the OCI config and the passwd/group the flake puts in an image are the ones the
# contract test runs. nix/images.nix turns the result into images.
{
  # builtins.fromJSON of nix/images.json
  spec,
  # The source revision for the OCI labels: the flake passes `self.rev or "dirty"`.
  rev,
  # From the workspace Cargo.toml ([workspace.package]).
  version,
  source,
  license,
}:
let
  inherit (builtins)
    attrNames
    elemAt
    filter
    length
    mapAttrs
    throw
    toString
    ;

  fileKinds = [
    "binary"
    "ca-bundle"
    "passwd"
    "group"
  ];

  # A service account: no password, no login shell (there is no shell in the image at all).
  passwdText =
    user:
    "${user.name}:x:${toString user.uid}:${toString user.gid}:${user.name}:${user.home}:/sbin/nologin\n";
  groupText = user: "${user.name}:x:${toString user.gid}:\n";

  # attrNames is sorted, so Env is in a stable order.
  envList = env: map (name: "${name}=${env.${name}}") (attrNames env);

  pathsOfKind = image: kind: filter (path: image.files.${path} == kind) (attrNames image.files);

  # Refuse a description that cannot work, at evaluation time, naming the image and the field.
  check =
    name: image:
    let
      fail = msg: throw "nix/images.json: image ${name}: ${msg}";
      binaries = pathsOfKind image "binary";
      caBundles = pathsOfKind image "ca-bundle";
      unknown = filter (path: !(builtins.elem image.files.${path} fileKinds)) (attrNames image.files);
    in
    if unknown != [ ] then
      fail "unknown file kind at ${elemAt unknown 0} (expected one of binary, ca-bundle, passwd, group)"
    else if length binaries != 1 then
      fail "needs exactly one file of kind binary"
    else if image.entrypoint == [ ] || elemAt image.entrypoint 0 != elemAt binaries 0 then
      fail "entrypoint must start with the binary's path ${elemAt binaries 0}"
    else if length caBundles != 1 then
      fail "needs exactly one file of kind ca-bundle"
    else if (image.env.SSL_CERT_FILE or null) != elemAt caBundles 0 then
      fail "env SSL_CERT_FILE must name the ca-bundle file ${elemAt caBundles 0}"
    else if image.user.uid == 0 || image.user.gid == 0 then
      fail "user must not be root"
    else if pathsOfKind image "passwd" != [ "/etc/passwd" ] || pathsOfKind image "group" != [ "/etc/group" ] then
      fail "passwd and group must be /etc/passwd and /etc/group"
    else
      image;
in
mapAttrs (
  name: image':
  let
    image = check name image';
  in
  {
    inherit name;
    inherit (image)
      flakeOutput
      package
      files
      description
      ;
    binaryPath = elemAt (pathsOfKind image "binary") 0;
    passwd = passwdText image.user;
    group = groupText image.user;
    # The OCI image config (https://github.com/opencontainers/image-spec/blob/main/config.md).
    config = {
      Entrypoint = image.entrypoint;
      User = "${toString image.user.uid}:${toString image.user.gid}";
      Env = envList image.env;
      WorkingDir = "/";
      Labels = {
        "org.opencontainers.image.title" = name;
        "org.opencontainers.image.description" = image.description;
        "org.opencontainers.image.revision" = rev;
        "org.opencontainers.image.version" = version;
        "org.opencontainers.image.source" = source;
        "org.opencontainers.image.licenses" = license;
      };
    };
  }
) spec.images
