#!/usr/bin/env bash
# Lay out Fashion-MNIST (Debian package dataset-fashion-mnist) where torchvision's FashionMNIST looks for it, so the
# psMNIST pipeline runs on real 28×28 images without a download:
#   sudo apt-get install dataset-fashion-mnist
#   scripts/fashion_mnist_as_mnist.sh ~/.cache/plmu
#   plmu-train task=psmnist task.data.dataset=fashion_mnist
set -euo pipefail
data_dir="${1:-${PLMU_DATA_DIR:-$HOME/.cache/plmu}}"
source_dir="${FASHION_MNIST_DIR:-/usr/share/datasets/fashion-mnist}"
raw="$data_dir/FashionMNIST/raw"
mkdir -p "$raw"
for name in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  if [ ! -f "$source_dir/$name.gz" ]; then
    echo "missing $source_dir/$name.gz: install dataset-fashion-mnist or set FASHION_MNIST_DIR" >&2
    exit 1
  fi
  gunzip -c "$source_dir/$name.gz" > "$raw/$name.tmp" && mv "$raw/$name.tmp" "$raw/$name"
done
echo "Fashion-MNIST ready in $raw"
