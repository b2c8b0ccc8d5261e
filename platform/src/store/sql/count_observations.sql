SELECT count(*) FROM observations
