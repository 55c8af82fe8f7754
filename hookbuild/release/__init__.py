"""The release pipeline: a request becomes a frozen plan (request, plan), which the stages run (stages,
execute) into a pushed image and a record entry (identity, labels, result, artifacts)."""
