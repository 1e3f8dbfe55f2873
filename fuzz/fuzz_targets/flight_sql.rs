#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    strata_fuzzing::flight_sql(data);
});
