-- For the fuzz targets only (`fuzzing.rs`): one row of the eleven values bound, in the order of
-- read_all.sql's columns, so the event reader sees exactly the values a fuzzer chose.
SELECT ?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11
