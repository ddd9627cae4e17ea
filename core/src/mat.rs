//! Row-major matrix views with an explicit row stride.
//!
//! Element `(r, c)` lives at `data[r·row_stride + c]`. Offsets are computed in `usize`
//! with overflow checks at construction, so a view never indexes out of bounds and never
//! wraps (`N·V` exceeds `2^31` in ordinary use).

use crate::error::TmError;

fn required_len(what: &'static str, rows: usize, cols: usize, row_stride: usize) -> Result<usize, TmError> {
    if row_stride < cols {
        return Err(TmError::StrideTooSmall { what, stride: row_stride, cols });
    }
    if rows == 0 {
        return Ok(0);
    }
    (rows - 1).checked_mul(row_stride).and_then(|n| n.checked_add(cols)).ok_or(TmError::SizeOverflow { what })
}

/// A read-only `[rows, cols]` view with a row stride.
#[derive(Clone, Copy, Debug)]
pub struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a, T> Mat<'a, T> {
    /// A strided view: row `r` is `data[r·row_stride .. r·row_stride + cols]`.
    ///
    /// Errors: `row_stride < cols`, size overflow, or `data` shorter than
    /// `(rows − 1)·row_stride + cols`. Extra trailing elements are allowed.
    pub fn new(data: &'a [T], rows: usize, cols: usize, row_stride: usize) -> Result<Self, TmError> {
        let need = required_len("logits", rows, cols, row_stride)?;
        if data.len() < need {
            return Err(TmError::LengthMismatch { what: "logits", expected: need, got: data.len() });
        }
        Ok(Mat { data, rows, cols, row_stride })
    }

    /// A dense view (`row_stride == cols`); `data.len()` must be exactly `rows·cols`.
    pub fn dense(data: &'a [T], rows: usize, cols: usize) -> Result<Self, TmError> {
        let need = rows.checked_mul(cols).ok_or(TmError::SizeOverflow { what: "logits" })?;
        if data.len() != need {
            return Err(TmError::LengthMismatch { what: "logits", expected: need, got: data.len() });
        }
        Ok(Mat { data, rows, cols, row_stride: cols })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Distance in elements between the starts of consecutive rows.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }
    /// The elements the view spans: `(rows − 1)·row_stride + cols` of them from the first
    /// (empty when `rows == 0`), gaps between rows included.
    pub fn span(&self) -> &'a [T] {
        let len = if self.rows == 0 { 0 } else { (self.rows - 1) * self.row_stride + self.cols };
        &self.data[..len]
    }
    /// Row `r` (`cols` elements). Panics if `r >= rows`.
    pub fn row(&self, r: usize) -> &'a [T] {
        assert!(r < self.rows);
        let start = r * self.row_stride;
        &self.data[start..start + self.cols]
    }
    /// The rows `[start, end)` as a view of their own.
    pub fn slice_rows(&self, start: usize, end: usize) -> Mat<'a, T> {
        assert!(start <= end && end <= self.rows);
        if start == end {
            return Mat { data: &self.data[..0], rows: 0, cols: self.cols, row_stride: self.row_stride };
        }
        let begin = start * self.row_stride;
        let stop = (end - 1) * self.row_stride + self.cols;
        Mat { data: &self.data[begin..stop], rows: end - start, cols: self.cols, row_stride: self.row_stride }
    }
}

/// A mutable `[rows, cols]` view with a row stride. Elements between rows (the stride gap)
/// are never written.
#[derive(Debug)]
pub struct MatMut<'a, T> {
    data: &'a mut [T],
    rows: usize,
    cols: usize,
    row_stride: usize,
}

impl<'a, T> MatMut<'a, T> {
    /// A strided mutable view; same rules as [`Mat::new`].
    pub fn new(data: &'a mut [T], rows: usize, cols: usize, row_stride: usize) -> Result<Self, TmError> {
        let need = required_len("output matrix", rows, cols, row_stride)?;
        if data.len() < need {
            return Err(TmError::LengthMismatch { what: "output matrix", expected: need, got: data.len() });
        }
        Ok(MatMut { data, rows, cols, row_stride })
    }

    /// A dense mutable view; `data.len()` must be exactly `rows·cols`.
    pub fn dense(data: &'a mut [T], rows: usize, cols: usize) -> Result<Self, TmError> {
        let need = rows.checked_mul(cols).ok_or(TmError::SizeOverflow { what: "output matrix" })?;
        if data.len() != need {
            return Err(TmError::LengthMismatch { what: "output matrix", expected: need, got: data.len() });
        }
        Ok(MatMut { data, rows, cols, row_stride: cols })
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }
    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }
    /// Distance in elements between the starts of consecutive rows.
    pub fn row_stride(&self) -> usize {
        self.row_stride
    }
    /// A read-only view of the same elements.
    pub fn as_mat(&self) -> Mat<'_, T> {
        Mat { data: self.data, rows: self.rows, cols: self.cols, row_stride: self.row_stride }
    }
    /// Row `r`, mutable. Panics if `r >= rows`.
    pub fn row_mut(&mut self, r: usize) -> &mut [T] {
        assert!(r < self.rows);
        let start = r * self.row_stride;
        &mut self.data[start..start + self.cols]
    }
    /// Splits into rows `[0, mid)` and `[mid, rows)`.
    pub fn split_at_rows(self, mid: usize) -> (MatMut<'a, T>, MatMut<'a, T>) {
        assert!(mid <= self.rows);
        let (rows, cols, stride) = (self.rows, self.cols, self.row_stride);
        let cut = (mid * stride).min(self.data.len());
        let (a, b) = self.data.split_at_mut(cut);
        (
            MatMut { data: a, rows: mid, cols, row_stride: stride },
            MatMut { data: b, rows: rows - mid, cols, row_stride: stride },
        )
    }
}
