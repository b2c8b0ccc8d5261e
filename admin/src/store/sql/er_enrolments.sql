DELETE FROM enrolments WHERE patient_id = $1
