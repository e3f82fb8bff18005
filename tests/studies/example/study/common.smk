# The example study: its paths (no rules here, snakemake --lint).
PATHS.update(
    {
        "example_table": f"{ANALYSIS}/example/final.parquet",
        "example_json": f"{ANALYSIS}/example/summary.json",
    }
)
