# rgbpose: raw videos -> poses -> annotations -> the dataset's streams (models) -> fused scores.
# The default target builds results/<dataset>_<benchmark>/fusion.txt for every dataset in
# config["run"] (the embedded synthetic demo unless configured otherwise).
from snakemake.utils import min_version

min_version("9.0")


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/streams.smk"
include: "workflow/rules/preprocess.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/cluster.smk"


rule all:
    default_target: True
    input:
        final_targets(),
