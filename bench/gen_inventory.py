#!/usr/bin/env python3
"""Generates a large, valid labfleet inventory for benchmarks: N nodes, M users (default 1000 / 10000).

    bench/gen_inventory.py OUTDIR [--nodes 1000] [--users 10000]

Writes OUTDIR/inventory/{lab,groups}.yaml, nodes/*.yaml (100 per file), users/*.yaml (500 per file) and
OUTDIR/templates/motd.mustache. Deterministic (fixed seed), so runs are comparable. The ssh keys are
well-formed ed25519 public keys (random 32-byte points: the validator checks format, not curve membership).
"""
import argparse
import base64
import os
import random
import struct


def ed25519_key(rng, comment):
    blob = struct.pack(">I", 11) + b"ssh-ed25519" + struct.pack(">I", 32) + bytes(rng.getrandbits(8) for _ in range(32))
    return "ssh-ed25519 " + base64.b64encode(blob).decode() + " " + comment


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("outdir")
    ap.add_argument("--nodes", type=int, default=1000)
    ap.add_argument("--users", type=int, default=10000)
    a = ap.parse_args()
    rng = random.Random(42)
    inv = os.path.join(a.outdir, "inventory")
    for d in ("nodes", "users"):
        os.makedirs(os.path.join(inv, d), exist_ok=True)
    os.makedirs(os.path.join(a.outdir, "templates"), exist_ok=True)

    with open(os.path.join(inv, "lab.yaml"), "w") as f:
        f.write("""lab:
  name: bench
  domain: bench.lab
  reserved_networks: [172.20.0.0/16, 10.0.0.0/16]
  ssh: { user: root, port: 22, identity: ~/.ssh/id_ed25519 }
  templates_dir: ../templates
  defaults:
    hosts: { 10.0.0.2: [proxy] }
    files:
      - { path: /etc/motd, template: motd.mustache, mode: "0644" }
    vars: { contact: "infra@bench.lab" }
""")
    with open(os.path.join(a.outdir, "templates", "motd.mustache"), "w") as f:
        f.write("{{node}}.{{lab}} ({{address}}) {{#gpus}}GPUs: {{gpus}}{{/gpus}} {{vars.contact}}\n")

    racks = 10
    with open(os.path.join(inv, "groups.yaml"), "w") as f:
        f.write("groups:\n")
        f.write("""  gpu:
    docker:
      data_root: /local/.docker
      address_pools: [{ base: 172.28.0.0/16, size: 24 }]
      bip: 172.29.0.1/24
      proxy: { http: "http://10.0.0.2:8889", https: "http://10.0.0.2:8889", no_proxy: [localhost] }
    mounts:
      - { source: "nas:/mnt/HDD/home", target: /home, type: nfs, options: [vers=4.2, fsc], automount: true }
      - { source: "nas:/mnt/SSD/public", target: /media/public, type: nfs, options: [ro, fsc] }
""")
        for r in range(racks):
            f.write(f"  rack{r}:\n    vars: {{ rack: \"{r}\" }}\n")

    per_file = 100
    for start in range(0, a.nodes, per_file):
        with open(os.path.join(inv, "nodes", f"nodes-{start // per_file:03d}.yaml"), "w") as f:
            f.write("nodes:\n")
            for i in range(start, min(start + per_file, a.nodes)):
                addr = f"10.1.{i // 250}.{i % 250 + 1}"
                gpus = 8 if i % 4 == 0 else 4
                f.write(f"  node{i:04d}: {{ address: {addr}, groups: [gpu, rack{i % racks}], gpus: {gpus} }}\n")

    with open(os.path.join(inv, "users", "groups.yaml"), "w") as f:
        f.write("user_groups:\n  gpu-users: { gid: 3000 }\n  docker: { system: true }\n")
        for r in range(racks):
            f.write(f"  rack{r}-users: {{ gid: {3100 + r} }}\n")

    per_file = 500
    for start in range(0, a.users, per_file):
        with open(os.path.join(inv, "users", f"users-{start // per_file:03d}.yaml"), "w") as f:
            f.write("users:\n")
            for i in range(start, min(start + per_file, a.users)):
                name = f"user{i:05d}"
                f.write(f"  {name}:\n")
                f.write(f"    uid: {10000 + i}\n")
                f.write(f"    full_name: Bench User {i}\n")
                f.write(f"    groups: [gpu-users, rack{i % racks}-users]\n")
                f.write(f"    ssh_keys: [\"{ed25519_key(rng, name + '@laptop')}\"]\n")
                if i % 3 == 0:
                    f.write("    rootless_docker: true\n")
                if i % 5 == 0:
                    f.write("    expires: 2099-12-31\n")
                if i % 7 == 0:
                    f.write(f"    on: [rack{i % racks}]\n")


if __name__ == "__main__":
    main()
