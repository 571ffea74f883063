#!/usr/bin/env bash
# Installs the Debian packages foldstack's steps and tests use, only if missing.
#   hmmer            hmmsearch/hmmbuild for template search (jackhmmer runs via pyhmmer)
#   mmseqs2          MMseqs2 fast MSA path
#   hhsuite          hhblits/hhsearch (full_dbs BFD + UniRef30, pdb70 templates); tests build a tiny HH-suite DB
#   kalign           template realignment, as AlphaFold calls it
#   python-biopython-doc   real PDB/mmCIF entries used as template fixtures
#   shellcheck       actionlint checks the workflows' run: scripts with it
#   chromium         headless browser the report tests open every HTML report in
#   relion           RELION 3.1 CPU programs (motion correction, picking, refinement) of the cryoem workload
#   nodejs, npm      asl-validator, 3dmol (package.json; only when node/npm are not already there)
set -euo pipefail
PKGS=(hmmer mmseqs2 hhsuite kalign python-biopython-doc shellcheck chromium relion)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
command -v node >/dev/null 2>&1 || missing+=(nodejs)
command -v npm >/dev/null 2>&1 || missing+=(npm)
if [ ${#missing[@]} -eq 0 ]; then echo "system packages present"; exit 0; fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "installing: ${missing[*]}"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
