#!/usr/bin/env bash
# Reproduces every committed table and plot in benchmarks/results/ (feature-space protocol,
# real CLIP ViT-B/32 features from ../shared/data). Run from the repository root with vlal installed.
# Usage: bash benchmarks/reproduce.sh [core|table1|ablation|hparams|all]
set -euo pipefail
D=${VLAL_DATA:-../shared/data/clip-vitb32}
OUT=benchmarks/results
ALL3="--data $D/dtd.npz --data $D/caltech101.npz --data $D/flowers102.npz"
what=${1:-all}

if [[ $what == core || $what == all ]]; then
  vlal bench $ALL3 --strategies random,entropy,cec --rounds 6 --seeds 3 --out $OUT --prefix core_random_entropy_cec --quiet
fi
if [[ $what == table1 || $what == all ]]; then
  vlal bench $ALL3 --strategies "random,entropy,margin,leastconf,coreset,badge,alfamix,gcnal,pcb(entropy),pcb(cec),cec" \
    --rounds 6 --seeds 3 --out $OUT --prefix table1 --quiet
fi
if [[ $what == ablation || $what == all ]]; then   # paper Fig. 3 (left: components, right: clustering)
  vlal bench --data $D/dtd.npz --strategies cec,cec-nocal,cec-nonn,cec-kmeans,cec-greedy \
    --rounds 6 --seeds 3 --out $OUT --prefix ablation_dtd --report-rounds 1,2,3,4,5,6 --quiet
fi
if [[ $what == hparams || $what == all ]]; then    # paper Fig. 4
  vlal bench --data $D/dtd.npz --strategies "cec[top_n=1],cec[top_n=5],cec[top_n=10],cec[top_n=20],cec[top_n=50]" \
    --rounds 6 --seeds 3 --out $OUT --prefix hparam_N_dtd --report-rounds 1,2,3,4,5,6 --quiet
  vlal bench --data $D/dtd.npz --strategies "cec[k=10],cec[k=20],cec[k=50]" \
    --rounds 6 --seeds 3 --out $OUT --prefix hparam_k_dtd --report-rounds 1,2,3,4,5,6 --quiet
  vlal bench --data $D/dtd.npz --strategies "cec[alpha=0.05],cec[alpha=0.1],cec[alpha=1]" \
    --rounds 6 --seeds 3 --out $OUT --prefix hparam_alpha_dtd --report-rounds 1,2,3,4,5,6 --quiet
fi
