//! The subset of Caffe's `caffe.proto` (BVLC, plus the SSD fork's layers) that the importer
//! reads, as prost messages. The field numbers are the file format: they must match the
//! upstream schema exactly. Enum fields are declared as `int32` (same wire encoding), with
//! the enum values as constants; the text-format names live in `prototxt.rs`.

/// `BlobShape`: dimensions, outermost first.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlobShape {
    #[prost(int64, repeated, packed = "true", tag = "1")]
    pub dim: Vec<i64>,
}

/// `BlobProto`: one weight blob. Old files give the shape as num/channels/height/width.
#[derive(Clone, PartialEq, prost::Message)]
pub struct BlobProto {
    #[prost(int64, optional, tag = "1")]
    pub num: Option<i64>,
    #[prost(int64, optional, tag = "2")]
    pub channels: Option<i64>,
    #[prost(int64, optional, tag = "3")]
    pub height: Option<i64>,
    #[prost(int64, optional, tag = "4")]
    pub width: Option<i64>,
    #[prost(float, repeated, packed = "true", tag = "5")]
    pub data: Vec<f32>,
    #[prost(message, optional, tag = "7")]
    pub shape: Option<BlobShape>,
    #[prost(double, repeated, packed = "true", tag = "8")]
    pub double_data: Vec<f64>,
}

/// `NetStateRule` (only the phase is looked at).
#[derive(Clone, PartialEq, prost::Message)]
pub struct NetStateRule {
    #[prost(int32, optional, tag = "1")]
    pub phase: Option<i32>,
}

pub const PHASE_TRAIN: i32 = 0;

#[derive(Clone, PartialEq, prost::Message)]
pub struct NetParameter {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    /// Old form of the layer list (`layers { type: CONVOLUTION ... }`).
    #[prost(message, repeated, tag = "2")]
    pub layers: Vec<V1LayerParameter>,
    /// Old form of the inputs: `input: "data"` with `input_dim` or `input_shape`.
    #[prost(string, repeated, tag = "3")]
    pub input: Vec<String>,
    #[prost(int64, repeated, packed = "false", tag = "4")]
    pub input_dim: Vec<i64>,
    #[prost(message, repeated, tag = "8")]
    pub input_shape: Vec<BlobShape>,
    #[prost(message, repeated, tag = "100")]
    pub layer: Vec<LayerParameter>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LayerParameter {
    #[prost(string, optional, tag = "1")]
    pub name: Option<String>,
    #[prost(string, optional, tag = "2")]
    pub r#type: Option<String>,
    #[prost(string, repeated, tag = "3")]
    pub bottom: Vec<String>,
    #[prost(string, repeated, tag = "4")]
    pub top: Vec<String>,
    #[prost(message, repeated, tag = "7")]
    pub blobs: Vec<BlobProto>,
    #[prost(message, repeated, tag = "8")]
    pub include: Vec<NetStateRule>,
    #[prost(message, repeated, tag = "9")]
    pub exclude: Vec<NetStateRule>,
    #[prost(message, optional, tag = "104")]
    pub concat_param: Option<ConcatParameter>,
    #[prost(message, optional, tag = "106")]
    pub convolution_param: Option<ConvolutionParameter>,
    #[prost(message, optional, tag = "108")]
    pub dropout_param: Option<DropoutParameter>,
    #[prost(message, optional, tag = "110")]
    pub eltwise_param: Option<EltwiseParameter>,
    #[prost(message, optional, tag = "117")]
    pub inner_product_param: Option<InnerProductParameter>,
    #[prost(message, optional, tag = "118")]
    pub lrn_param: Option<LrnParameter>,
    #[prost(message, optional, tag = "121")]
    pub pooling_param: Option<PoolingParameter>,
    #[prost(message, optional, tag = "123")]
    pub relu_param: Option<ReluParameter>,
    #[prost(message, optional, tag = "125")]
    pub softmax_param: Option<SoftmaxParameter>,
    #[prost(message, optional, tag = "131")]
    pub prelu_param: Option<PReluParameter>,
    #[prost(message, optional, tag = "133")]
    pub reshape_param: Option<ReshapeParameter>,
    #[prost(message, optional, tag = "135")]
    pub flatten_param: Option<FlattenParameter>,
    #[prost(message, optional, tag = "139")]
    pub batch_norm_param: Option<BatchNormParameter>,
    #[prost(message, optional, tag = "142")]
    pub scale_param: Option<ScaleParameter>,
    #[prost(message, optional, tag = "143")]
    pub input_param: Option<InputParameter>,
    #[prost(message, optional, tag = "202")]
    pub permute_param: Option<PermuteParameter>,
    #[prost(message, optional, tag = "203")]
    pub prior_box_param: Option<PriorBoxParameter>,
    #[prost(message, optional, tag = "204")]
    pub detection_output_param: Option<DetectionOutputParameter>,
    #[prost(message, optional, tag = "206")]
    pub norm_param: Option<NormalizeParameter>,
}

/// The deprecated layer message (`layers`), with its enum layer type.
#[derive(Clone, PartialEq, prost::Message)]
pub struct V1LayerParameter {
    #[prost(string, repeated, tag = "2")]
    pub bottom: Vec<String>,
    #[prost(string, repeated, tag = "3")]
    pub top: Vec<String>,
    #[prost(string, optional, tag = "4")]
    pub name: Option<String>,
    #[prost(int32, optional, tag = "5")]
    pub r#type: Option<i32>,
    #[prost(message, repeated, tag = "6")]
    pub blobs: Vec<BlobProto>,
    #[prost(message, optional, tag = "9")]
    pub concat_param: Option<ConcatParameter>,
    #[prost(message, optional, tag = "10")]
    pub convolution_param: Option<ConvolutionParameter>,
    #[prost(message, optional, tag = "12")]
    pub dropout_param: Option<DropoutParameter>,
    #[prost(message, optional, tag = "17")]
    pub inner_product_param: Option<InnerProductParameter>,
    #[prost(message, optional, tag = "18")]
    pub lrn_param: Option<LrnParameter>,
    #[prost(message, optional, tag = "19")]
    pub pooling_param: Option<PoolingParameter>,
    #[prost(message, optional, tag = "24")]
    pub eltwise_param: Option<EltwiseParameter>,
    #[prost(message, optional, tag = "30")]
    pub relu_param: Option<ReluParameter>,
    #[prost(message, repeated, tag = "32")]
    pub include: Vec<NetStateRule>,
    #[prost(message, repeated, tag = "33")]
    pub exclude: Vec<NetStateRule>,
    #[prost(message, optional, tag = "39")]
    pub softmax_param: Option<SoftmaxParameter>,
}

/// `V1LayerParameter.LayerType` values of the layers the importer maps, with their names
/// in the new form.
pub const V1_LAYER_TYPES: &[(&str, i32, &str)] = &[
    ("CONCAT", 3, "Concat"),
    ("CONVOLUTION", 4, "Convolution"),
    ("DATA", 5, "Data"),
    ("DROPOUT", 6, "Dropout"),
    ("FLATTEN", 8, "Flatten"),
    ("INNER_PRODUCT", 14, "InnerProduct"),
    ("LRN", 15, "LRN"),
    ("POOLING", 17, "Pooling"),
    ("RELU", 18, "ReLU"),
    ("SIGMOID", 19, "Sigmoid"),
    ("SOFTMAX", 20, "Softmax"),
    ("SOFTMAX_LOSS", 21, "SoftmaxWithLoss"),
    ("SPLIT", 22, "Split"),
    ("TANH", 23, "TanH"),
    ("ELTWISE", 25, "Eltwise"),
    ("ACCURACY", 1, "Accuracy"),
];

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConvolutionParameter {
    #[prost(uint32, optional, tag = "1")]
    pub num_output: Option<u32>,
    #[prost(bool, optional, tag = "2", default = "true")]
    pub bias_term: Option<bool>,
    #[prost(uint32, repeated, packed = "false", tag = "3")]
    pub pad: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "4")]
    pub kernel_size: Vec<u32>,
    #[prost(uint32, optional, tag = "5", default = "1")]
    pub group: Option<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "6")]
    pub stride: Vec<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub pad_h: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub pad_w: Option<u32>,
    #[prost(uint32, optional, tag = "11")]
    pub kernel_h: Option<u32>,
    #[prost(uint32, optional, tag = "12")]
    pub kernel_w: Option<u32>,
    #[prost(uint32, optional, tag = "13")]
    pub stride_h: Option<u32>,
    #[prost(uint32, optional, tag = "14")]
    pub stride_w: Option<u32>,
    #[prost(int32, optional, tag = "16", default = "1")]
    pub axis: Option<i32>,
    #[prost(uint32, repeated, packed = "false", tag = "18")]
    pub dilation: Vec<u32>,
}

pub const POOL_MAX: i32 = 0;
pub const POOL_AVE: i32 = 1;
pub const ROUND_CEIL: i32 = 0;

#[derive(Clone, PartialEq, prost::Message)]
pub struct PoolingParameter {
    #[prost(int32, optional, tag = "1")]
    pub pool: Option<i32>,
    #[prost(uint32, repeated, packed = "false", tag = "2")]
    pub kernel_size: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "3")]
    pub stride: Vec<u32>,
    #[prost(uint32, repeated, packed = "false", tag = "4")]
    pub pad: Vec<u32>,
    #[prost(uint32, optional, tag = "5")]
    pub kernel_h: Option<u32>,
    #[prost(uint32, optional, tag = "6")]
    pub kernel_w: Option<u32>,
    #[prost(uint32, optional, tag = "7")]
    pub stride_h: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub stride_w: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub pad_h: Option<u32>,
    #[prost(uint32, optional, tag = "10")]
    pub pad_w: Option<u32>,
    #[prost(bool, optional, tag = "12")]
    pub global_pooling: Option<bool>,
    /// CEIL (0, Caffe's behaviour) or FLOOR (1); a later addition to BVLC's schema.
    #[prost(int32, optional, tag = "13")]
    pub round_mode: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InnerProductParameter {
    #[prost(uint32, optional, tag = "1")]
    pub num_output: Option<u32>,
    #[prost(bool, optional, tag = "2", default = "true")]
    pub bias_term: Option<bool>,
    #[prost(int32, optional, tag = "5", default = "1")]
    pub axis: Option<i32>,
    #[prost(bool, optional, tag = "6")]
    pub transpose: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct LrnParameter {
    #[prost(uint32, optional, tag = "1", default = "5")]
    pub local_size: Option<u32>,
    #[prost(float, optional, tag = "2", default = "1")]
    pub alpha: Option<f32>,
    #[prost(float, optional, tag = "3", default = "0.75")]
    pub beta: Option<f32>,
    /// ACROSS_CHANNELS (0) or WITHIN_CHANNEL (1).
    #[prost(int32, optional, tag = "4")]
    pub norm_region: Option<i32>,
    #[prost(float, optional, tag = "5", default = "1")]
    pub k: Option<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ConcatParameter {
    #[prost(uint32, optional, tag = "1", default = "1")]
    pub concat_dim: Option<u32>,
    #[prost(int32, optional, tag = "2")]
    pub axis: Option<i32>,
}

pub const ELTWISE_SUM: i32 = 1;

#[derive(Clone, PartialEq, prost::Message)]
pub struct EltwiseParameter {
    /// PROD (0), SUM (1, the default) or MAX (2).
    #[prost(int32, optional, tag = "1", default = "1")]
    pub operation: Option<i32>,
    #[prost(float, repeated, packed = "false", tag = "2")]
    pub coeff: Vec<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct BatchNormParameter {
    #[prost(bool, optional, tag = "1")]
    pub use_global_stats: Option<bool>,
    #[prost(float, optional, tag = "3", default = "0.00001")]
    pub eps: Option<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ScaleParameter {
    #[prost(int32, optional, tag = "1", default = "1")]
    pub axis: Option<i32>,
    #[prost(int32, optional, tag = "2", default = "1")]
    pub num_axes: Option<i32>,
    #[prost(bool, optional, tag = "4")]
    pub bias_term: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PReluParameter {
    #[prost(bool, optional, tag = "2")]
    pub channel_shared: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReluParameter {
    #[prost(float, optional, tag = "1")]
    pub negative_slope: Option<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct SoftmaxParameter {
    #[prost(int32, optional, tag = "2", default = "1")]
    pub axis: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DropoutParameter {
    #[prost(float, optional, tag = "1", default = "0.5")]
    pub dropout_ratio: Option<f32>,
    #[prost(bool, optional, tag = "2", default = "true")]
    pub scale_train: Option<bool>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct FlattenParameter {
    #[prost(int32, optional, tag = "1", default = "1")]
    pub axis: Option<i32>,
    #[prost(int32, optional, tag = "2", default = "-1")]
    pub end_axis: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PermuteParameter {
    #[prost(uint32, repeated, packed = "false", tag = "1")]
    pub order: Vec<u32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct PriorBoxParameter {
    #[prost(float, repeated, packed = "false", tag = "1")]
    pub min_size: Vec<f32>,
    #[prost(float, repeated, packed = "false", tag = "2")]
    pub max_size: Vec<f32>,
    #[prost(float, repeated, packed = "false", tag = "3")]
    pub aspect_ratio: Vec<f32>,
    #[prost(bool, optional, tag = "4", default = "true")]
    pub flip: Option<bool>,
    #[prost(bool, optional, tag = "5")]
    pub clip: Option<bool>,
    #[prost(float, repeated, packed = "false", tag = "6")]
    pub variance: Vec<f32>,
    #[prost(uint32, optional, tag = "7")]
    pub img_size: Option<u32>,
    #[prost(uint32, optional, tag = "8")]
    pub img_h: Option<u32>,
    #[prost(uint32, optional, tag = "9")]
    pub img_w: Option<u32>,
    #[prost(float, optional, tag = "10")]
    pub step: Option<f32>,
    #[prost(float, optional, tag = "11")]
    pub step_h: Option<f32>,
    #[prost(float, optional, tag = "12")]
    pub step_w: Option<f32>,
    #[prost(float, optional, tag = "13", default = "0.5")]
    pub offset: Option<f32>,
}

pub const CODE_CENTER_SIZE: i32 = 2;

#[derive(Clone, PartialEq, prost::Message)]
pub struct NonMaximumSuppressionParameter {
    #[prost(float, optional, tag = "1", default = "0.3")]
    pub nms_threshold: Option<f32>,
    #[prost(int32, optional, tag = "2")]
    pub top_k: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct DetectionOutputParameter {
    #[prost(uint32, optional, tag = "1")]
    pub num_classes: Option<u32>,
    #[prost(bool, optional, tag = "2", default = "true")]
    pub share_location: Option<bool>,
    #[prost(int32, optional, tag = "3")]
    pub background_label_id: Option<i32>,
    #[prost(message, optional, tag = "4")]
    pub nms_param: Option<NonMaximumSuppressionParameter>,
    /// CORNER (1, the default), CENTER_SIZE (2) or CORNER_SIZE (3).
    #[prost(int32, optional, tag = "6", default = "1")]
    pub code_type: Option<i32>,
    #[prost(int32, optional, tag = "7", default = "-1")]
    pub keep_top_k: Option<i32>,
    #[prost(bool, optional, tag = "8")]
    pub variance_encoded_in_target: Option<bool>,
    #[prost(float, optional, tag = "9")]
    pub confidence_threshold: Option<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct NormalizeParameter {
    #[prost(bool, optional, tag = "1", default = "true")]
    pub across_spatial: Option<bool>,
    #[prost(bool, optional, tag = "3", default = "true")]
    pub channel_shared: Option<bool>,
    #[prost(float, optional, tag = "4", default = "1e-10")]
    pub eps: Option<f32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct ReshapeParameter {
    #[prost(message, optional, tag = "1")]
    pub shape: Option<BlobShape>,
    #[prost(int32, optional, tag = "2")]
    pub axis: Option<i32>,
    #[prost(int32, optional, tag = "3", default = "-1")]
    pub num_axes: Option<i32>,
}

#[derive(Clone, PartialEq, prost::Message)]
pub struct InputParameter {
    #[prost(message, repeated, tag = "1")]
    pub shape: Vec<BlobShape>,
}
