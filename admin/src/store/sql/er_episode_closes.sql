DELETE FROM episode_closes WHERE patient_id = $1
