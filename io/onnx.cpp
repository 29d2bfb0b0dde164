// ONNX encoding (see io/onnx.h) with the classes protoc generated from onnx.proto in Debian's
// libonnx-dev (onnx/onnx_pb.h, built with ONNX_NAMESPACE=onnx and ONNX_ML=1, as the package's
// CMake config says). kiln checks what the format itself cannot say (every input defined, names
// unique, byte counts) so that a broken graph fails here, naming the node, not in a consumer.
#include "kiln/io/onnx.h"

#include <onnx/onnx_pb.h>

#include <climits>
#include <set>

#include "kiln/core/atomic_file.h"
#include "kiln/core/error.h"

namespace kiln::io {
namespace {

void set_value_info(onnx::ValueInfoProto* v, const OnnxValue& value) {
  v->set_name(value.name);
  if (!value.doc.empty()) v->set_doc_string(value.doc);
  onnx::TypeProto_Tensor* t = v->mutable_type()->mutable_tensor_type();
  t->set_elem_type(onnx::TensorProto::FLOAT);
  onnx::TensorShapeProto* shape = t->mutable_shape();
  for (const OnnxDim& d : value.dims) {
    onnx::TensorShapeProto_Dimension* dim = shape->add_dim();
    if (!d.param.empty())
      dim->set_dim_param(d.param);
    else if (d.size >= 0)
      dim->set_dim_value(d.size);
    else
      fail("ONNX graph value '" + value.name + "'", "dimensions with a size >= 0 or a name",
           std::to_string(d.size));
  }
}

void set_initializer(onnx::TensorProto* t, const NamedArray& a) {
  if (a.dtype != DType::f32)
    fail("ONNX initializer '" + a.name + "'", "float32", dtype_name(a.dtype));
  if (a.bytes.size() != static_cast<size_t>(a.numel()) * sizeof(float))
    fail("ONNX initializer '" + a.name + "'", std::to_string(a.numel() * 4) + " bytes for shape " +
         shape_str(a.shape), std::to_string(a.bytes.size()) + " bytes");
  t->set_name(a.name);
  t->set_data_type(onnx::TensorProto::FLOAT);
  for (int64_t d : a.shape) t->add_dims(d);
  // raw_data is little-endian fp32, which NamedArray's bytes already are (x86-64).
  t->set_raw_data(a.bytes.data(), a.bytes.size());
}

void set_attribute(onnx::AttributeProto* p, const OnnxAttribute& attr) {
  p->set_name(attr.name);
  if (const auto* i = std::get_if<int64_t>(&attr.value)) {
    p->set_type(onnx::AttributeProto::INT);
    p->set_i(*i);
  } else if (const auto* f = std::get_if<float>(&attr.value)) {
    p->set_type(onnx::AttributeProto::FLOAT);
    p->set_f(*f);
  } else {
    p->set_type(onnx::AttributeProto::INTS);
    for (int64_t v : std::get<std::vector<int64_t>>(attr.value)) p->add_ints(v);
  }
}

// Every name a node reads must be a graph input, an initializer or an earlier node's output;
// every name is defined once; the graph outputs exist.
void check_graph(const OnnxModel& m) {
  std::set<std::string> defined;
  auto define = [&](const std::string& name, const std::string& what) {
    if (name.empty()) fail("ONNX graph: " + what, "a name", "an empty one");
    if (!defined.insert(name).second)
      fail("ONNX graph: " + what, "a name defined once", "'" + name + "' defined twice");
  };
  for (const auto& v : m.inputs) define(v.name, "input");
  for (const auto& a : m.initializers) define(a.name, "initializer");
  for (const auto& n : m.nodes) {
    for (const auto& in : n.inputs)
      if (!defined.count(in))
        fail("ONNX node '" + n.name + "' (" + n.op_type + ")",
             "inputs defined by the graph inputs, the initializers or earlier nodes",
             "'" + in + "', defined by none of them");
    for (const auto& out : n.outputs) define(out, "output of node '" + n.name + "'");
  }
  for (const auto& v : m.outputs)
    if (!defined.count(v.name))
      fail("ONNX graph output '" + v.name + "'", "a value some node computes", "none computes it");
}

}  // namespace

std::string encode_onnx(const OnnxModel& m) {
  // Fails loudly when the headers and libonnx_proto/libprotobuf at run time disagree.
  GOOGLE_PROTOBUF_VERIFY_VERSION;
  check_graph(m);
  onnx::ModelProto model;
  model.set_ir_version(kOnnxIrVersion);
  model.set_producer_name("kiln");
  model.set_producer_version(m.producer_version);
  if (!m.doc.empty()) model.set_doc_string(m.doc);
  onnx::OperatorSetIdProto* opset = model.add_opset_import();
  opset->set_domain("");  // ai.onnx
  opset->set_version(kOnnxOpset);
  for (const auto& [key, value] : m.metadata) {
    onnx::StringStringEntryProto* e = model.add_metadata_props();
    e->set_key(key);
    e->set_value(value);
  }

  onnx::GraphProto* g = model.mutable_graph();
  g->set_name(m.graph_name.empty() ? "kiln" : m.graph_name);
  for (const auto& v : m.inputs) set_value_info(g->add_input(), v);
  for (const auto& v : m.outputs) set_value_info(g->add_output(), v);
  for (const auto& a : m.initializers) set_initializer(g->add_initializer(), a);
  for (const auto& n : m.nodes) {
    onnx::NodeProto* p = g->add_node();
    p->set_op_type(n.op_type);
    p->set_name(n.name);
    if (!n.doc.empty()) p->set_doc_string(n.doc);
    for (const auto& in : n.inputs) p->add_input(in);
    for (const auto& out : n.outputs) p->add_output(out);
    for (const auto& attr : n.attributes) set_attribute(p->add_attribute(), attr);
  }

  size_t size = model.ByteSizeLong();
  if (size > static_cast<size_t>(INT_MAX))
    fail("ONNX model", "at most 2 GiB (protobuf's limit for one message)",
         std::to_string(size) + " bytes", "ONNX's external-data files are not supported");
  std::string bytes;
  if (!model.SerializeToString(&bytes)) throw Error("ONNX model: protobuf could not serialize it");
  return bytes;
}

void write_onnx(const std::filesystem::path& path, const OnnxModel& model) {
  std::string bytes = encode_onnx(model);  // every check before the file is created
  write_file_atomic(path, bytes);
}

}  // namespace kiln::io
