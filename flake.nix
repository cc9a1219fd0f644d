{
  description = "nton: fan-out batch pipelines on AWS (Step Functions, Lambda, AWS Batch N_TO_N) as static musl binaries and minimal OCI images";

  # flake.lock was written without network access to GitHub: crane's and rust-overlay's revs
  # come from copies of their repositories, each narHash computed from `git archive <rev>` (the
  # tarball GitHub serves) with `nix-hash --type sha256`, a method checked against published
  # locks; nixpkgs' rev and narHash are those crane's own test/flake.lock pins for nixos-26.05
  # at crane 2c71e194 (the crane rev locked here), the pairing crane tests itself against.
  # `nix flake update` replaces all of it with fetched values.
  inputs = {
    # A release branch: crane's master (locked here, after 0.23.4) needs nixpkgs >= 26.05.
    nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";
    # crane has had no inputs of its own since 0.20, so there is nothing to make follow.
    crane.url = "github:ipetkov/crane";
    rust-overlay = {
      url = "github:oxalica/rust-overlay";
      inputs.nixpkgs.follows = "nixpkgs";
    };
  };

  outputs =
    {
      self,
      nixpkgs,
      crane,
      rust-overlay,
    }:
    let
      inherit (nixpkgs) lib;

      # aarch64-linux costs one list entry: the musl target, the toolchain and the image
      # architecture all follow the system. (Graviton Batch and arm64 Lambda take these images.)
      systems = [
        "x86_64-linux"
        "aarch64-linux"
      ];

      # The one description of the images, also read by tests/tests/image_contract.rs.
      imageSpec = builtins.fromJSON (builtins.readFile ./nix/images.json);
      workspace = (builtins.fromTOML (builtins.readFile ./Cargo.toml)).workspace.package;
      toolchainFile = (builtins.fromTOML (builtins.readFile ./rust-toolchain.toml)).toolchain;
      rev = self.rev or "dirty";

      images = import ./nix/image-config.nix {
        spec = imageSpec;
        inherit rev;
        inherit (workspace) version license;
        source = workspace.repository;
      };

      # Everything the outputs need for one system.
      perSystem =
        system:
        let
          pkgs = import nixpkgs {
            inherit system;
            overlays = [ rust-overlay.overlays.default ];
          };
          # Cross to <arch>-unknown-linux-musl with static linking. crane sees build != host and
          # sets CARGO_BUILD_TARGET and the linker, and exports the compiler as the upper-case
          # CC_<ARCH>_UNKNOWN_LINUX_MUSL, a name cc-rs does not read (it reads CC_<target> with
          # the target's dashes or underscores, then TARGET_CC, then CC). So
          # .cargo/config.toml's `CC_x86_64_unknown_linux_musl = "musl-gcc"` (for Debian
          # machines) would win, and musl-gcc is not in the sandbox: commonArgs sets that same
          # lower-case name to the static stdenv's gcc (aws-lc-sys builds C with it), as the dev
          # shell does. An env var set on the build beats a [env] entry of a config file.
          static = pkgs.pkgsStatic;
          muslTarget = static.stdenv.hostPlatform.rust.rustcTarget;
          # cc-rs's name for the target's C compiler, and that compiler.
          muslCcVar = "CC_${lib.toLower static.stdenv.hostPlatform.rust.cargoEnvVarTarget}";
          muslCc = "${static.stdenv.cc}/bin/${static.stdenv.cc.targetPrefix}cc";

          # rust-toolchain.toml stays the one place naming the channel and components; the
          # musl target of this system is added (aarch64 is not in the file).
          toolchainFor =
            p:
            p.rust-bin.fromRustupToolchain {
              inherit (toolchainFile) channel;
              components = toolchainFile.components or [ ];
              targets = lib.unique ((toolchainFile.targets or [ ]) ++ [ muslTarget ]);
            };
          craneLib = (crane.mkLib static).overrideToolchain toolchainFor;

          dataFiles = lib.fileset.fileFilter (
            file:
            lib.any file.hasExt [
              "json"
              "yaml"
              "yml"
              "csv"
            ]
          );
          src = lib.fileset.toSource {
            root = ./.;
            fileset = lib.fileset.unions [
              (craneLib.fileset.commonCargoSources ./.)
              # The CLI and the engine read the template; tests read fixtures next to them.
              ./cloudformation
              (dataFiles ./crates)
              (dataFiles ./tests)
            ];
          };

          commonArgs = {
            inherit src;
            inherit (workspace) version;
            pname = "nton";
            strictDeps = true;
            ${muslCcVar} = muslCc;
          };

          # Every dependency of the whole workspace in the release profile (LTO, one codegen
          # unit), built once; each shipped binary starts from these artifacts.
          cargoArtifacts = craneLib.buildDepsOnly commonArgs;

          # Clippy and the unit tests do not ship: they build with the dev profile (no LTO, no
          # codegen-units = 1), from one dependency build of their own made with that profile,
          # which is minutes instead of the release profile's tens of minutes on a cold runner.
          checkArgs = commonArgs // {
            CARGO_PROFILE = "dev";
          };
          checkArtifacts = craneLib.buildDepsOnly checkArgs;

          binary =
            name:
            craneLib.buildPackage (
              commonArgs
              // {
                inherit cargoArtifacts;
                pname = name;
                cargoExtraArgs = "--locked -p ${name}";
                # The workspace's tests run once, in checks.tests.
                doCheck = false;
                meta.mainProgram = name;
              }
            );
          binaries = lib.genAttrs [
            "nton"
            "nton-job"
            "nton-init"
            "nton-watch"
          ] binary;

          imagesByName = import ./nix/images.nix {
            inherit pkgs lib images binaries;
            tag = if self ? shortRev then "git-${self.shortRev}" else "dirty";
          };
          # packages.image-job etc., named in images.json.
          imagePackages = lib.mapAttrs' (
            name: image: lib.nameValuePair images.${name}.flakeOutput image
          ) imagesByName;
          # result/nton-job.tar.gz, result/nton-init.tar.gz, result/nton-watch.tar.gz
          allImages = pkgs.linkFarm "nton-images" (
            lib.mapAttrsToList (name: image: {
              name = "${name}.tar.gz";
              path = image;
            }) imagesByName
          );

          # cfn-guard is not in nixpkgs: built from its crates.io release (which ships its
          # Cargo.lock) with a native crane, same version as tests/tools.sh. The .crate is
          # fetched at evaluation with a fixed hash (the NAR hash of the unpacked crate), not by a
          # derivation: crane reads Cargo.toml and Cargo.lock from the source, and reading them
          # out of a derivation would be import-from-derivation, which fails when `nix flake
          # check` evaluates the aarch64 outputs on an x86_64 machine.
          craneNative = crane.mkLib pkgs;
          cfn-guard = craneNative.buildPackage {
            pname = "cfn-guard";
            version = "3.2.1";
            src = builtins.fetchTarball {
              url = "https://static.crates.io/crates/cfn-guard/cfn-guard-3.2.1.crate";
              sha256 = "1h2ya76zdg8c8hyb7k9ryfmqbj8h155h74vh6l72mpj098dxlkh9";
            };
            strictDeps = true;
            doCheck = false;
            meta.mainProgram = "cfn-guard";
          };

          python = pkgs.python3.withPackages (
            ps:
            [
              ps.cfn-lint
              ps.moto
            ]
            # moto_server (flask, flask-cors), the emulator the AWS tests start; nixpkgs names
            # that extra `server` in some releases and only `all` in others.
            ++ (ps.moto.optional-dependencies.server or ps.moto.optional-dependencies.all or [ ])
          );

          templates = lib.fileset.toSource {
            root = ./.;
            fileset = ./cloudformation;
          };
        in
        {
          inherit
            pkgs
            static
            toolchainFor
            craneLib
            src
            commonArgs
            cargoArtifacts
            checkArgs
            checkArtifacts
            binaries
            imagesByName
            imagePackages
            allImages
            cfn-guard
            python
            templates
            ;
        };

      forEachSystem = f: lib.genAttrs systems (system: f (perSystem system));
    in
    {
      packages = forEachSystem (
        s:
        s.binaries
        // s.imagePackages
        // {
          images = s.allImages;
          inherit (s) cfn-guard;
          default = s.binaries.nton;
        }
      );

      apps = forEachSystem (s: {
        default = {
          type = "app";
          program = lib.getExe s.binaries.nton;
          meta.description = "The nton CLI";
        };
      });

      checks = forEachSystem (
        s:
        let
          inherit (s) craneLib commonArgs checkArgs;
          cargoArtifacts = s.checkArtifacts;
        in
        {
          fmt = craneLib.cargoFmt commonArgs;

          clippy = craneLib.cargoClippy (
            checkArgs
            // {
              inherit cargoArtifacts;
              cargoClippyExtraArgs = "--workspace --all-targets -- --deny warnings";
            }
          );

          # The unit tests of every crate. nton-tests (moto server, bwrap image contract, real
          # binaries) needs a network namespace and user namespaces the Nix sandbox does not
          # give; tests/run-all runs it.
          tests = craneLib.cargoTest (
            checkArgs
            // {
              inherit cargoArtifacts;
              cargoTestExtraArgs = "--workspace --exclude nton-tests";
            }
          );

          cfn-lint = s.pkgs.runCommand "nton-cfn-lint" { nativeBuildInputs = [ s.python ]; } ''
            export HOME=$TMPDIR
            cfn-lint ${s.templates}/cloudformation/*.yaml
            touch $out
          '';

          # Same two steps as tests/run-all: the rules' own tests, then every template.
          cfn-guard = s.pkgs.runCommand "nton-cfn-guard" { nativeBuildInputs = [ s.cfn-guard ]; } ''
            cd ${s.templates}/cloudformation
            cfn-guard test -d guard
            for template in *.yaml; do
              cfn-guard validate -d "$template" -r guard --show-summary fail
            done
            touch $out
          '';

          # Building them is part of the gate too.
          images = s.allImages;
        }
        // s.binaries
        # image-job-contents etc.: each built image holds exactly what nix/images.json describes
        # (the files, no extra store path, a static binary, no shell) and the expected config.
        # tests/tests/image_contract.rs runs the same description with bwrap where Nix is absent.
        // lib.mapAttrs' (
          name: image:
          lib.nameValuePair "${images.${name}.flakeOutput}-contents" (
            s.pkgs.runCommand "nton-${name}-contents" { nativeBuildInputs = [ s.pkgs.python3 ]; } ''
              python3 ${./nix/check-image.py} ${image} ${
                s.pkgs.writeText "${name}-expected.json" (builtins.toJSON images.${name})
              }
              touch $out
            ''
          )
        ) s.imagesByName
      );

      devShells = forEachSystem (
        s:
        let
          inherit (s) pkgs static;
          cargoEnv = static.stdenv.hostPlatform.rust.cargoEnvVarTarget;
          muslCc = "${static.stdenv.cc}/bin/${static.stdenv.cc.targetPrefix}cc";
        in
        {
          # A native shell (the tools run here) whose cargo can also build the static binaries:
          # `cargo build --release --target <arch>-unknown-linux-musl` finds the musl cross
          # gcc through these two variables instead of Debian's musl-gcc.
          default = pkgs.mkShell {
            packages = [
              (s.toolchainFor pkgs)
              pkgs.cargo-nextest
              s.python
              s.cfn-guard
              pkgs.awscli2
              pkgs.actionlint
              pkgs.zizmor
              pkgs.skopeo
              pkgs.bubblewrap
              pkgs.nodejs
            ];
            "CC_${lib.toLower cargoEnv}" = muslCc;
            "CARGO_TARGET_${cargoEnv}_LINKER" = muslCc;
          };
        }
      );

      formatter = lib.genAttrs systems (system: nixpkgs.legacyPackages.${system}.nixfmt-tree);
    };
}
