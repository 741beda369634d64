"""The benchmark suite (`scripts/bench`): the ledger's figures against ceilings measured in the
same run on the same database. Never imported by the ledger itself."""
