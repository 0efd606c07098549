#!/usr/bin/env bash
# Reproduces every committed table and plot in benchmarks/results/ (feature-space protocol,
# real CLIP ViT-B/32 features from ../shared/data). Run from the repository root with vlal installed.
# Usage: bash benchmarks/reproduce.sh [core|table1|ablation|hparams|tuners|all]
# core/table1_free/ablation_dtd/hparams were measured before issue 11 with the free-embedding tuner
# (--tuner free); `tuners` re-measures with the default tuner (anchored) and validates the tuners.
set -euo pipefail
D=${VLAL_DATA:-../shared/data/clip-vitb32}
OUT=benchmarks/results
ALL3="--data $D/dtd.npz --data $D/caltech101.npz --data $D/flowers102.npz"
what=${1:-all}

if [[ $what == core || $what == all ]]; then
  vlal bench $ALL3 --strategies random,entropy,cec --rounds 6 --seeds 3 --tuner free --out $OUT --prefix core_random_entropy_cec --quiet
fi
if [[ $what == table1 || $what == all ]]; then
  vlal bench $ALL3 --strategies "random,entropy,margin,leastconf,coreset,badge,alfamix,gcnal,pcb(entropy),pcb(cec),cec" \
    --rounds 6 --seeds 3 --tuner free --out $OUT --prefix table1_free --quiet
fi
if [[ $what == ablation || $what == all ]]; then   # paper Fig. 3 (left: components, right: clustering)
  vlal bench --data $D/dtd.npz --strategies cec,cec-nocal,cec-nonn,cec-kmeans,cec-greedy \
    --rounds 6 --seeds 3 --tuner free --out $OUT --prefix ablation_dtd --report-rounds 1,2,3,4,5,6 --quiet
fi
if [[ $what == hparams || $what == all ]]; then    # paper Fig. 4
  vlal bench --data $D/dtd.npz --strategies "cec[top_n=1],cec[top_n=5],cec[top_n=10],cec[top_n=20],cec[top_n=50]" \
    --rounds 6 --seeds 3 --tuner free --out $OUT --prefix hparam_N_dtd --report-rounds 1,2,3,4,5,6 --quiet
  vlal bench --data $D/dtd.npz --strategies "cec[k=10],cec[k=20],cec[k=50]" \
    --rounds 6 --seeds 3 --tuner free --out $OUT --prefix hparam_k_dtd --report-rounds 1,2,3,4,5,6 --quiet
  vlal bench --data $D/dtd.npz --strategies "cec[alpha=0.05],cec[alpha=0.1],cec[alpha=1]" \
    --rounds 6 --seeds 3 --tuner free --out $OUT --prefix hparam_alpha_dtd --report-rounds 1,2,3,4,5,6 --quiet
fi
if [[ $what == tuners || $what == all ]]; then     # issue 11: tuner validation, Table 1 / ablation / robustness
  export VLAL_DATA=$D
  python benchmarks/validate_tuners.py
  S=random,entropy,badge,alfamix,cec
  for ds in dtd caltech101 flowers102 imagenet_real_even; do
    python benchmarks/run_per_seed.py $ds $S anchored table1_$ds
    python benchmarks/run_per_seed.py $ds "margin,leastconf,coreset,gcnal,pcb(entropy),pcb(cec)" anchored table1_${ds}_more
    python benchmarks/run_per_seed.py $ds $S tip-adapter robust_tip-adapter_$ds
  done
  python benchmarks/run_per_seed.py imagenet_real_even cec-nocal,cec-nonn,cec-kmeans,cec-greedy anchored ablation_imagenet_real_even_part
  python benchmarks/run_per_seed.py imagenet_real_even $S free robust_free_imagenet_real_even
  python benchmarks/tuner_robustness.py
fi
