//! Prints a Parquet file as CSV on stdout (a debugging aid): `dump_parquet FILE [MAX_ROWS]`.
use std::fs::File;

use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let path = args.get(1).expect("usage: dump_parquet FILE [MAX_ROWS]");
    let max: usize = args
        .get(2)
        .map(|s| s.parse().expect("MAX_ROWS"))
        .unwrap_or(usize::MAX);
    let file = File::open(path).expect("open");
    let reader = ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader");
    let mut w = arrow::csv::WriterBuilder::new()
        .with_header(true)
        .build(std::io::stdout());
    let mut n = 0;
    for batch in reader {
        let batch = batch.expect("batch");
        let take = batch.num_rows().min(max - n);
        w.write(&batch.slice(0, take)).expect("write");
        n += take;
        if n >= max {
            break;
        }
    }
}
