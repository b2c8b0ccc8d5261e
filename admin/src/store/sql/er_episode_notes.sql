DELETE FROM episode_notes WHERE patient_id = $1
